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

A run survives what ends it early: SIGINT and SIGTERM save ``last.pt`` after a whole update
(:mod:`seq2seq.train.interrupt`); ``last.pt`` is also written every ``training.save_minutes``, so
that SIGKILL loses little; updates with a non-finite loss or gradient are skipped and a run that
keeps diverging stops (:mod:`seq2seq.train.guard`); one process at a time trains in a run
directory, and ``--resume`` checks that the training data are the run's
(:mod:`seq2seq.train.run_dir`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.checkpoint import Stored, load_weights, save_checkpoint
from seq2seq.config import RunConfig
from seq2seq.data.batching import Batch, ParallelData, make_batch, plan_batches
from seq2seq.data.prepare import RunData
from seq2seq.errors import RunDirError, TrainingError
from seq2seq.kernels import accelerate
from seq2seq.models import build_model
from seq2seq.runtime import autocast, resolve_precision, rng_state, set_rng_state
from seq2seq.train.distributed import World, shard
from seq2seq.train.guard import DivergenceGuard, all_finite, strict_json
from seq2seq.train.interrupt import Interrupted, Interrupts
from seq2seq.train.logs import Window, progress_bar, tensorboard_writer
from seq2seq.train.schedule import Schedule
from seq2seq.train.validation import BatchLoss, validate

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training stands; saved in ``last.pt`` as plain data."""

    step: int = 0  # updates done (skipped ones included)
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    elapsed: float = 0.0  # seconds of training, summed over resumes
    best: float = -math.inf  # best early-stopping score (higher is better)
    bad_validations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    validation_due: bool = False  # an interruption cut short the validation of this step


class Update(NamedTuple):
    """What one optimizer update did, for the log window (:class:`~seq2seq.train.logs.Window`)."""

    loss: float  # summed over the target tokens; not finite for a skipped update
    targets: int  # target tokens
    grad_norm: float  # the global gradient norm before clipping
    spike: bool  # the loss was far above its running average (seq2seq.train.guard)


def higher_is_better(metric: str, scores: dict[str, float]) -> float:
    """The validation ``scores`` as one number that grows as the model improves: dev BLEU, or
    minus the dev loss (``metric``: "bleu" or "loss")."""
    return scores["dev_bleu"] if metric == "bleu" else -scores["dev_loss"]


class Trainer:
    """Owns the model, optimizer, schedule and progress of one run."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        data: RunData,
        device: torch.device,
        world: World | None = None,
        interrupts: Interrupts | None = None,
    ) -> None:
        self.config, self.run_dir, self.data, self.device = config, run_dir, data, device
        self.world = world = world or World()
        self.interrupts = interrupts or Interrupts()  # not entered: signals act as they would without it
        tc = config.training
        self.model = build_model(config.model, len(data.src_vocab), len(data.tgt_vocab), data.src_vocab.pad_id)
        self.model.to(device).train()
        if tc.kernels:  # the config has checked that compile has a step loop to compile
            accelerate(self.model, tc.compile)
        loss = BatchLoss(self.model, data.tgt_vocab.pad_id, tc.label_smoothing)
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
        self.guard = DivergenceGuard(tc.max_bad_updates, tc.learning_rate)
        self.data_fingerprint: dict[str, Any] | None = None  # saved with the training state, checked on --resume
        self.last_saved: int | None = None  # the step last.pt holds
        self.saved_at = time.monotonic()  # when last.pt was written (or the run began)
        self.metrics = (run_dir / "metrics.jsonl").open("a", encoding="utf-8") if world.is_main else None
        self.tensorboard = tensorboard_writer(run_dir) if world.is_main else None

    # --- state --------------------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        p = self.progress
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.device),
            "progress": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "guard": self.guard.state_dict(),
            "data": self.data_fingerprint,
        }

    def restore(self, stored: Stored, path: Path) -> None:
        state = stored.train_state
        if state is None:
            raise RunDirError(f"{path}: holds no training state to resume from")
        load_weights(self.model, stored.weights, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.device)
        self.progress = Progress(**state["progress"])
        self.guard.load_state_dict(state.get("guard"))
        self.last_saved = self.progress.step
        log.info("resumed from %s at step %d (epoch %d)", path, self.progress.step, self.progress.epoch)

    def save(self, name: str, with_state: bool = True) -> None:
        """Write ``RUN_DIR/name`` (rank 0; every rank calls this at the same step). Weights that
        are not finite are never written: :class:`TrainingError` instead."""
        step = self.progress.step
        if not all_finite(self.model.parameters()):  # the same weights on every rank
            held = f"last.pt holds step {self.last_saved}" if self.last_saved is not None else "there is no last.pt yet"
            raise TrainingError(
                f"training diverged: the weights are not finite at step {step}, so {name} was not written ({held}); "
                "lower training.learning_rate or set training.clip_grad_norm"
            )
        if name == "last.pt":
            self.last_saved, self.saved_at = step, time.monotonic()
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
        """One line of ``metrics.jsonl``, strict JSON (see :func:`strict_json`), and TensorBoard."""
        if self.metrics is None:  # not rank 0
            return
        self.metrics.write(json.dumps(strict_json(record), allow_nan=False) + "\n")
        self.metrics.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])

    # --- the loop -----------------------------------------------------------------------
    def update(self, batches: list[Batch]) -> Update:
        """One optimizer update over ``batches`` (gradient accumulation); returns the summed
        loss and target tokens, the pre-clip gradient norm and whether the loss spiked. Each
        batch's loss is normalised by its own token count, and the gradient is the mean over the
        batches (and, under DDP, over the ranks): W ranks with K batches each make the same
        update as one process with W * K batches. An update whose loss or gradient norm is not
        finite (on any rank) is skipped (:mod:`seq2seq.train.guard`)."""
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
        self.scaler.unscale_(self.optimizer)  # a no-op without fp16's loss scaling
        if tc.clip_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad_norm))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None]))
        # With fp16, an overflowing gradient is the loss scaler's to skip (it then lowers the
        # scale), not a sign of divergence.
        per_token = total / max(tokens, 1)
        ok = not self.world.any(not self.guard.finite(per_token, 0.0 if self.scaler.is_enabled() else norm))
        if ok:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        spike = self.guard.record(self.progress.step + 1, ok, per_token, norm, self.last_saved)
        return Update(total, tokens, norm, spike)

    def run(self) -> None:
        """Train until a budget or patience runs out. On SIGINT or SIGTERM, save ``last.pt``
        at the next consistent point and raise :class:`Interrupted`."""
        p = self.progress
        started = time.perf_counter() - p.elapsed
        bar = progress_bar(self.config.training.max_steps, p.step) if self.world.is_main else None
        try:
            with self.interrupts.deferred():
                try:
                    self._run(started, bar)
                except Interrupted as e:
                    if not e.again:  # a whole update and its bookkeeping are done: save them
                        if self.last_saved != p.step:
                            self.save("last.pt")
                        e.saved_step = p.step
                    raise
        finally:
            if bar is not None:
                bar.close()
        log.info("finished at step %d, epoch %d, %.1f min", p.step, p.epoch, p.elapsed / 60)

    def _run(self, started: float, bar: Any) -> None:
        tc, p = self.config.training, self.progress
        train, window = self.data.train, Window(tc.clip_grad_norm)
        if p.validation_due:  # an interruption cut this step's validation short
            self.validate_and_save()
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
                loss, targets, norm, spike = self.update(batches)
                p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + len(group)
                p.elapsed = time.perf_counter() - started
                applied = math.isfinite(loss)  # a skipped update's loss is not averaged in
                tokens = sum(b.num_tokens for b in batches)
                window.add(loss if applied else 0.0, targets if applied else 0, tokens, norm, spike)
                if p.step % tc.log_every == 0:
                    self.log_train(window, bar)
                stop, save_now = self.world.any_each([self.interrupts.requested, self.save_due()])
                if p.step % tc.validate_every == 0:
                    p.validation_due = True
                    self.validate_and_save()
                elif save_now and not self.guard.state.bad_in_row:  # not weights that just gave NaN
                    self.save("last.pt")
                if stop:
                    raise Interrupted(self.interrupts.signum or signal.SIGTERM)  # SIGTERM: another rank's
            if p.batch_in_epoch >= len(plan):
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        if not p.history or p.history[-1]["step"] != p.step:
            self.validate_and_save()
        self.save("last.pt")

    def save_due(self) -> bool:
        """Whether last.pt is due after this step: every ``save_every`` steps or ``save_minutes``."""
        tc, p = self.config.training, self.progress
        if tc.save_every and p.step % tc.save_every == 0:
            return True
        return bool(tc.save_minutes) and time.monotonic() - self.saved_at >= 60 * tc.save_minutes

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

    def log_train(self, window: Window, bar: Any) -> None:
        loss, targets, tokens = self.world.sum([window.loss, window.targets, window.tokens])  # all ranks
        window.loss, window.targets, window.tokens = loss, int(targets), int(tokens)
        p = self.progress
        record = {"step": p.step, "epoch": p.epoch, "elapsed": round(p.elapsed, 2), **window.flush()}
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.guard.state.skipped:
            record["skipped_updates"] = self.guard.state.skipped
        self.log_metrics(record)
        text = f"loss {record['loss']:.3f}  {record['tokens_per_s']:,.0f} tok/s  lr {record['lr']:.2e}"
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)
            bar.update(self.progress.step - bar.n)
        else:
            log.info("step %d  epoch %d  %s", self.progress.step, self.progress.epoch, text)

    def validate_and_save(self) -> None:
        p, tc = self.progress, self.config.training
        # The dev-set decoding changes nothing that is saved: a signal may cut it short (it is
        # done again on --resume). Under DDP the others wait for rank 0's scores: it finishes.
        cut_short = self.interrupts.immediate() if self.world.size == 1 else contextlib.nullcontext()
        with cut_short:
            scores = validate(self.model, self.data, self.config, self.device) if self.world.is_main else {}
        scores = self.world.broadcast(scores)
        self.schedule.observe(-higher_is_better(tc.decay_metric, scores))
        score = higher_is_better(tc.early_stopping_metric, scores)
        improved = score > p.best
        if improved:
            p.best, p.bad_validations = score, 0
        else:
            p.bad_validations += 1
        p.history.append({"step": p.step, **scores})
        p.validation_due = False
        self.log_metrics({"step": p.step, "epoch": p.epoch, "elapsed": round(p.elapsed, 2), **scores})
        log.info(
            "validation at step %d: loss %.3f  ppl %.2f  BLEU %.2f%s",
            p.step,
            scores["dev_loss"],
            scores["dev_ppl"],
            scores["dev_bleu"],
            "  (best)" if improved else "",
        )
        if self.guard.state.bad_in_row:  # weights whose last update was skipped as non-finite: kept out
            log.warning("step %d: not saving checkpoints while updates are being skipped", p.step)
            return
        if improved:
            self.save("best.pt", with_state=False)
        if tc.keep_checkpoints:  # for seq2seq average
            self.save(f"ckpt-{p.step:07d}.pt", with_state=False)
            for old in sorted(self.run_dir.glob("ckpt-*.pt"))[: -tc.keep_checkpoints]:
                old.unlink()
        self.save("last.pt")
