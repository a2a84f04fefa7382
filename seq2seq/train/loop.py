"""The training loop: batches, loss, updates, validation, checkpoints, early stopping.

A run directory holds everything: ``config.yaml`` (resolved), the SentencePiece models,
``last.pt`` (weights, optimizer, schedule, RNG and data position: ``--resume`` continues
exactly where it stopped), ``best.pt`` (the best validation so far, all ``translate``
needs), ``metrics.jsonl`` (one JSON record per log line and per validation, with ``step``,
``epoch`` and ``elapsed`` training seconds) and, where tensorboard is installed, ``tensorboard/``.

Under ``torchrun`` (see :mod:`seq2seq.train.distributed`) every rank trains a
DistributedDataParallel replica on its shard of each epoch's batches; rank 0 alone
validates, logs and writes the run directory, and tells the others the validation scores,
so that every rank takes the same learning-rate and stopping decisions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.checkpoint import Stored, read_checkpoint, save_checkpoint
from seq2seq.config import RunConfig
from seq2seq.data.batching import Batch, ParallelData, make_batch, plan_batches
from seq2seq.data.prepare import RunData, prepare_data
from seq2seq.errors import RunDirError
from seq2seq.evaluate import score_corpus
from seq2seq.kernels import accelerate
from seq2seq.models import build_model
from seq2seq.models.seq2seq import Seq2Seq
from seq2seq.runtime import autocast, check_precision, resolve_precision, rng_state, set_rng_state, set_threads
from seq2seq.train.distributed import World, close_world, init_world, shard
from seq2seq.train.run_dir import check_resumable, open_run_dir, write_config
from seq2seq.train.schedule import Schedule
from seq2seq.translate import translate_ids

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training stands; saved in ``last.pt`` as plain data."""

    step: int = 0  # updates done
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    elapsed: float = 0.0  # seconds of training, summed over resumes
    best: float = -math.inf  # best early-stopping score (higher is better)
    bad_validations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def batch_loss(model: Seq2Seq, batch: Batch, pad: int, label_smoothing: float) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the real target positions, and their count.

    Only unpadded positions are projected to the vocabulary (:meth:`Seq2Seq.cross_entropy`;
    with kernels, a chunk of rows at a time with the softmax and its gradient in float32)."""
    features = model(batch.src, batch.src_lengths, batch.tgt_in)
    real = batch.tgt_out != pad
    loss = model.cross_entropy(features[real], batch.tgt_out[real], label_smoothing)
    return loss, int(real.sum())


class _BatchLoss(nn.Module):
    """:func:`batch_loss` as one module call, so that DistributedDataParallel wraps a forward
    that uses every parameter (the output projection included)."""

    def __init__(self, model: Seq2Seq, pad: int, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.pad, self.label_smoothing = model, pad, label_smoothing

    def forward(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return batch_loss(self.model, batch, self.pad, self.label_smoothing)


@torch.no_grad()
def validate(model: Seq2Seq, data: RunData, config: RunConfig, device: torch.device) -> dict[str, float]:
    """Dev loss and perplexity (teacher forced) and dev BLEU (greedy or beam search)."""
    model.eval()
    pad = data.tgt_vocab.pad_id
    total, count = 0.0, 0
    pairs = data.dev.pairs
    plan = plan_batches(pairs.src_lengths, pairs.tgt_lengths, config.data.batch_tokens, config.data.batch_sentences)
    for indices in plan:
        batch = make_batch(pairs, indices, pad, data.tgt_vocab.bos_id, data.tgt_vocab.eos_id).to(device)
        loss, n = batch_loss(model, batch, pad, 0.0)
        total, count = total + float(loss.detach()), count + n
    search = dataclasses.replace(config.search, beam_size=config.training.validation_beam_size, n_best=1)
    hyps = translate_ids(
        model, data.dev.src_ids, search, data.src_vocab, data.tgt_vocab, device, shortlist=data.shortlist
    )
    texts = data.tgt_vocab.decode([h[0].tokens for h in hyps])
    bleu = score_corpus(texts, data.dev.references)["bleu"]
    model.train()
    dev_loss = total / max(count, 1)
    return {"dev_loss": dev_loss, "dev_ppl": math.exp(min(dev_loss, 50.0)), "dev_bleu": bleu}


class Trainer:
    """Owns the model, optimizer, schedule and progress of one run."""

    def __init__(
        self, config: RunConfig, run_dir: Path, data: RunData, device: torch.device, world: World | None = None
    ) -> None:
        self.config, self.run_dir, self.data, self.device = config, run_dir, data, device
        self.world = world = world or World()
        tc = config.training
        self.model = build_model(config.model, len(data.src_vocab), len(data.tgt_vocab), data.src_vocab.pad_id)
        self.model.to(device).train()
        if tc.kernels:  # the config has checked that compile has a step loop to compile
            accelerate(self.model, tc.compile)
        loss = _BatchLoss(self.model, data.tgt_vocab.pad_id, tc.label_smoothing)
        # Under torchrun, DDP averages the ranks' gradients during backward (see update()).
        self.ddp = None
        if world.size > 1:
            self.ddp = DistributedDataParallel(loss, device_ids=[device.index] if device.type == "cuda" else None)
        self.loss: nn.Module = self.ddp or loss
        optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        # The fused update is one kernel over all parameters, much faster on the CPU than the
        # default multi-tensor update (scripts/bench/benchmark.py times whole updates).
        self.optimizer = optimizers[tc.optimizer](
            self.model.parameters(),
            lr=tc.learning_rate,
            betas=tc.betas,
            weight_decay=tc.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )
        self.schedule = Schedule(
            tc.learning_rate, tc.scheduler, tc.warmup_steps, tc.decay_factor, tc.decay_patience, tc.min_learning_rate
        )
        self.precision = resolve_precision(tc.precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.autocast = autocast(self.precision, device)
        self.progress = Progress()
        self.metrics = (run_dir / "metrics.jsonl").open("a", encoding="utf-8") if world.is_main else None
        self.tensorboard = _tensorboard(run_dir) if world.is_main else None

    # --- state --------------------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        p = self.progress
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.device),
            "progress": {k: getattr(p, k) for k in p.__dataclass_fields__},
        }

    def restore(self, stored: Stored, path: Path) -> None:
        state = stored.train_state
        if state is None:
            raise RunDirError(f"{path}: holds no training state to resume from")
        self.model.load_state_dict(stored.weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.device)
        self.progress = Progress(**state["progress"])
        log.info("resumed from %s at step %d (epoch %d)", path, self.progress.step, self.progress.epoch)

    def save(self, name: str, with_state: bool = True) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(
            self.run_dir / name,
            self.config,
            self.model,
            self.data.src_vocab,
            self.data.tgt_vocab,
            self.train_state() if with_state else None,
            self.data.shortlist,
        )

    def close(self) -> None:
        """Close the metrics file and the TensorBoard writer (rank 0); safe to call twice."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def log_metrics(self, record: dict[str, Any]) -> None:
        if self.metrics is None:  # not rank 0
            return
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])

    # --- the loop -----------------------------------------------------------------------
    def update(self, batches: list[Batch]) -> tuple[float, int]:
        """One optimizer update over ``batches`` (gradient accumulation); returns the summed
        loss and target tokens. Each batch's loss is normalised by its own token count, and the
        gradient is the mean over the batches (and, under DDP, over the ranks): W ranks with K
        batches each make the same update as one process with W * K batches."""
        tc = self.config.training
        lr = self.schedule.lr(self.progress.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            # Under DDP, all-reduce the gradients once per update, after the last micro-batch.
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                with self.autocast():
                    loss, n = self.loss(batch)
                self.scaler.scale(loss / (n * len(batches))).backward()
            total, tokens = total + float(loss.detach()), tokens + n
        if tc.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens

    def run(self) -> None:
        tc, p = self.config.training, self.progress
        train = self.data.train
        started, window = time.perf_counter() - p.elapsed, _Window()
        bar = _progress_bar(tc.max_steps, p.step) if self.world.is_main else None
        try:
            while not self.finished(started):
                plan = plan_batches(
                    train.src_lengths,
                    train.tgt_lengths,
                    self.config.data.batch_tokens,
                    self.config.data.batch_sentences,
                    seed=tc.seed * 100_003 + p.epoch,
                )
                plan = shard(plan, self.world)  # the same plan on every rank; this rank's part
                while p.batch_in_epoch < len(plan) and not self.finished(started):
                    group = plan[p.batch_in_epoch : p.batch_in_epoch + tc.accumulate]
                    batches = [self.make(train, idx) for idx in group]
                    loss, tokens = self.update(batches)
                    p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + len(group)
                    p.elapsed = time.perf_counter() - started
                    window.add(loss, tokens, sum(b.num_tokens for b in batches))
                    if p.step % tc.log_every == 0:
                        self.log_train(window, bar)
                    if p.step % tc.validate_every == 0:
                        self.validate_and_save()
                    elif tc.save_every and p.step % tc.save_every == 0:
                        self.save("last.pt")
                if p.batch_in_epoch >= len(plan):
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        finally:
            if bar is not None:
                bar.close()
        if not p.history or p.history[-1]["step"] != p.step:
            self.validate_and_save()
        self.save("last.pt")
        log.info("finished at step %d, epoch %d, %.1f min", p.step, p.epoch, p.elapsed / 60)

    def make(self, data: ParallelData, indices: Any) -> Batch:
        vocab = self.data.tgt_vocab
        return make_batch(data, indices, vocab.pad_id, vocab.bos_id, vocab.eos_id).to(self.device)

    def finished(self, started: float) -> bool:
        tc, p = self.config.training, self.progress
        if tc.max_steps and p.step >= tc.max_steps:
            return True
        if tc.max_epochs and p.epoch > tc.max_epochs:
            return True
        # Under DDP the clocks must agree: one rank stopping alone would hang the others.
        if tc.max_minutes and self.world.any(time.perf_counter() - started >= tc.max_minutes * 60):
            return True
        return bool(tc.patience) and p.bad_validations >= tc.patience

    def log_train(self, window: _Window, bar: Any) -> None:
        loss, targets, tokens = self.world.sum([window.loss, window.targets, window.tokens])  # all ranks
        window.loss, window.targets, window.tokens = loss, int(targets), int(tokens)
        p = self.progress
        record = {"step": p.step, "epoch": p.epoch, "elapsed": round(p.elapsed, 2), **window.flush()}
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        self.log_metrics(record)
        text = f"loss {record['loss']:.3f}  {record['tokens_per_s']:,.0f} tok/s  lr {record['lr']:.2e}"
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)
            bar.update(self.progress.step - bar.n)
        else:
            log.info("step %d  epoch %d  %s", self.progress.step, self.progress.epoch, text)

    def validate_and_save(self) -> None:
        p, tc = self.progress, self.config.training
        scores = validate(self.model, self.data, self.config, self.device) if self.world.is_main else {}
        scores = self.world.broadcast(scores)
        self.schedule.observe(scores["dev_loss"])
        score = scores["dev_bleu"] if tc.early_stopping_metric == "bleu" else -scores["dev_loss"]
        improved = score > p.best
        if improved:
            p.best, p.bad_validations = score, 0
        else:
            p.bad_validations += 1
        p.history.append({"step": p.step, **scores})
        self.log_metrics({"step": p.step, "epoch": p.epoch, "elapsed": round(p.elapsed, 2), **scores})
        log.info(
            "validation at step %d: loss %.3f  ppl %.2f  BLEU %.2f%s",
            p.step,
            scores["dev_loss"],
            scores["dev_ppl"],
            scores["dev_bleu"],
            "  (best)" if improved else "",
        )
        if improved:
            self.save("best.pt", with_state=False)
        if tc.keep_checkpoints:  # for seq2seq average
            self.save(f"ckpt-{p.step:07d}.pt", with_state=False)
            for old in sorted(self.run_dir.glob("ckpt-*.pt"))[: -tc.keep_checkpoints]:
                old.unlink()
        self.save("last.pt")


class _Window:
    """Loss and throughput since the last log line."""

    def __init__(self) -> None:
        self.start, self.loss, self.targets, self.tokens = time.perf_counter(), 0.0, 0, 0

    def add(self, loss: float, targets: int, tokens: int) -> None:
        self.loss, self.targets, self.tokens = self.loss + loss, self.targets + targets, self.tokens + tokens

    def flush(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        out = {"loss": self.loss / max(self.targets, 1), "tokens_per_s": self.tokens / seconds}
        self.__init__()  # type: ignore[misc]
        return out


def _progress_bar(total: int, initial: int) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total or None, initial=initial, unit="step", dynamic_ncols=True)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(config: RunConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Train a model as ``config`` says, in ``run_dir``; returns the path of ``best.pt``.
    Under torchrun, every rank calls this; rank 0 alone writes ``run_dir``."""
    run_dir = Path(run_dir)
    tc = config.training
    world, device = init_world(tc.device)
    finished = False
    try:
        if not world.is_main:  # one voice in the log
            logging.getLogger("seq2seq").setLevel(logging.WARNING)
        if world.is_main:
            open_run_dir(run_dir, resume, overwrite)
        world.barrier()
        resumed = read_checkpoint(run_dir / "last.pt") if resume else None
        if resumed is not None:
            check_resumable(resumed.config, config, run_dir)
        precision = resolve_precision(tc.precision, device)
        check_precision(precision, device, "training.precision")
        # Ranks on one machine share its cores.
        threads = set_threads(tc.threads or max(1, len(os.sched_getaffinity(0)) // world.local_size))
        torch.manual_seed(tc.seed + world.rank)  # the same weights come from rank 0 (DDP); own dropout masks
        log.info("device %s, precision %s, %d threads, %d process(es)", device, precision, threads, world.size)
        if world.is_main:  # SentencePiece is trained once, by rank 0; the others load its models
            write_config(config, run_dir / "config.yaml")
            data = prepare_data(config.data, run_dir, seed=tc.seed)
        world.barrier()
        if not world.is_main:
            data = prepare_data(config.data, run_dir, seed=tc.seed)
        trainer = Trainer(config, run_dir, data, device, world)
        try:
            if resumed is not None:
                trainer.restore(resumed, run_dir / "last.pt")
                if world.rank:  # last.pt holds rank 0's RNG; the other ranks need dropout masks of their own
                    torch.manual_seed(tc.seed + world.rank + 1_000_003 * trainer.progress.step)
            n_params = sum(p.numel() for p in trainer.model.parameters())
            log.info("model: %s parameters; %d training pairs", f"{n_params:,}", len(data.train))
            trainer.run()
        finally:  # whatever ends the run (an error, Ctrl-C), the files are closed
            trainer.close()
        finished = True
    finally:
        close_world(world, finished)
    return run_dir / "best.pt"
