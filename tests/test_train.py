"""Training pieces: learning-rate schedules, device and precision choices, a bf16 step; and
runs of the loop that stop early (training.patience, early_stopping_metric), stop on the clock
(max_minutes) and log to TensorBoard."""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY, data_overrides

from seq2seq.checkpoint import read_checkpoint
from seq2seq.cli import main
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, SearchConfig, TrainingConfig
from seq2seq.data.batching import Batch
from seq2seq.errors import DeviceError
from seq2seq.models import build_model
from seq2seq.runtime import autocast, check_precision, pick_device, resolve_precision
from seq2seq.train import loop
from seq2seq.train.schedule import Schedule
from seq2seq.train.validation import batch_loss


def test_warmup_then_constant() -> None:
    s = Schedule(1e-3, "constant", warmup_steps=10)
    assert s.lr(1) == pytest.approx(1e-4)
    assert s.lr(10) == s.lr(500) == pytest.approx(1e-3)


def test_inverse_sqrt_decays_after_warmup() -> None:
    s = Schedule(1e-3, "inverse_sqrt", warmup_steps=100)
    assert s.lr(100) == pytest.approx(1e-3)
    assert s.lr(400) == pytest.approx(5e-4)


def test_plateau_decays_after_patience_and_checkpoints() -> None:
    s = Schedule(1e-3, "plateau", factor=0.5, patience=1, min_lr=1e-4)
    for loss in (3.0, 2.0, 2.5, 2.6):  # two validations without improvement > patience 1
        s.observe(loss)
    assert s.lr(1000) == pytest.approx(5e-4)
    restored = Schedule(1e-3, "plateau", factor=0.5, patience=1, min_lr=1e-4)
    restored.load_state_dict(s.state_dict())
    assert restored.lr(1000) == s.lr(1000)
    for _ in range(20):
        s.observe(9.0)
    assert s.lr(1000) == pytest.approx(1e-4)  # never below min_lr


def test_device_and_precision_choices() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(DeviceError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="choose one of auto, fp32, bf16, fp16"):
        check_precision("fp8", torch.device("cpu"))


def test_auto_precision_is_bf16_only_on_gpus_that_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32"
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, cpu) == resolve_precision(explicit, cuda) == explicit
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # e.g. a V100
    assert resolve_precision("auto", cuda) == "fp32"
    assert TrainingConfig().precision == SearchConfig().precision == "auto"


def test_bf16_autocast_step_on_cpu() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8),
    )
    model = build_model(config, 20, 20)
    src = torch.randint(4, 20, (3, 5))
    tgt = torch.randint(4, 20, (3, 4))
    batch = Batch(src, torch.tensor([5, 4, 2]), tgt, tgt, num_tokens=0)
    with autocast("bf16", torch.device("cpu"))():
        loss, n = batch_loss(model, batch, pad=0, label_smoothing=0.1)
    assert loss.dtype == torch.float32 and n == 12 and math.isfinite(loss.detach().item())
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def train(run: Path, corpus: Path, **training: object) -> dict[str, object]:
    """Train the tiny config on ``corpus`` with ``training.KEY=VALUE`` overrides; returns the
    progress that ``last.pt`` holds."""
    sets = [x for key, value in training.items() for x in ("--set", f"training.{key}={value}")]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]) == 0
    state = read_checkpoint(run / "last.pt").train_state
    assert state is not None
    return state["progress"]


def metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def validations(run: Path) -> list[int]:
    """The steps at which the run validated."""
    return [int(r["step"]) for r in metrics(run) if "dev_bleu" in r]


def script_validation(monkeypatch: pytest.MonkeyPatch, scores: list[tuple[float, float]]) -> None:
    """Each validation of the run returns the next (dev loss, dev BLEU) of ``scores``, so that
    a test decides when the model improves."""
    it: Iterator[tuple[float, float]] = iter(scores)

    def validate(*args: object, **kwargs: object) -> dict[str, float]:
        loss, bleu = next(it)
        return {"dev_loss": loss, "dev_ppl": math.exp(loss), "dev_bleu": bleu}

    monkeypatch.setattr(loop, "validate", validate)


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = read_checkpoint(a).weights, read_checkpoint(b).weights
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize(("patience", "stopped_at"), [(2, 5), (3, 6), (0, 8)])
def test_patience_stops_after_that_many_validations_without_improvement(
    tmp_path: Path, toy_corpus: Path, monkeypatch: pytest.MonkeyPatch, patience: int, stopped_at: int
) -> None:
    """BLEU 1, 0, 2, 0, 0, 0, ...: an improvement at the third validation starts the count
    again, so patience 2 stops at the fifth; patience 0 never stops early."""
    script_validation(monkeypatch, [(1.0, bleu) for bleu in (1, 0, 2, 0, 0, 0, 0, 0)])
    run = tmp_path / "run"
    progress = train(run, toy_corpus, patience=patience, validate_every=1, max_steps=8)
    assert progress["step"] == stopped_at
    assert validations(run) == list(range(1, stopped_at + 1))  # none after the stop
    assert progress["bad_validations"] == stopped_at - 3


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "stopped_at"), [("loss", 6), ("bleu", 2)])
def test_early_stopping_metric_chooses_the_score(
    tmp_path: Path, toy_corpus: Path, monkeypatch: pytest.MonkeyPatch, metric: str, stopped_at: int
) -> None:
    """The dev loss falls at every validation while BLEU falls too: by loss every validation
    is the best so far (best.pt is the last weights), by BLEU only the first (patience 1
    stops at the second, and best.pt keeps the first step's weights)."""
    script_validation(monkeypatch, [(6.0 - step, 30.0 - step) for step in range(6)])
    run = tmp_path / "run"
    progress = train(run, toy_corpus, early_stopping_metric=metric, patience=1, validate_every=1, max_steps=6)
    assert progress["step"] == stopped_at
    assert same_weights(run / "best.pt", run / "last.pt") == (metric == "loss")


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "decay"), [("loss", 1.0), ("bleu", 0.25)])
def test_the_plateau_scheduler_follows_decay_metric(
    tmp_path: Path, toy_corpus: Path, monkeypatch: pytest.MonkeyPatch, metric: str, decay: float
) -> None:
    """The dev loss keeps falling a little while BLEU has stalled: by the loss every validation
    improves and the rate never decays; by BLEU it halves after the third validation and again
    after the fifth (two without improvement, more than patience 1)."""
    script_validation(monkeypatch, [(3.0 - 0.01 * step, 20.0) for step in range(5)])
    run = tmp_path / "run"
    train(run, toy_corpus, scheduler="plateau", decay_patience=1, decay_metric=metric, validate_every=1, max_steps=5)
    state = read_checkpoint(run / "last.pt").train_state
    assert state is not None and state["schedule"]["decay"] == decay


@pytest.mark.slow
def test_max_minutes_stops_the_run_and_still_writes_the_checkpoints(tmp_path: Path, toy_corpus: Path) -> None:
    budget = 1e-4  # minutes: the clock runs out within the first steps
    run = tmp_path / "run"
    progress = train(run, toy_corpus, max_minutes=budget, max_steps=500, validate_every=1000)
    assert progress["step"] < 500 and progress["elapsed"] >= 60 * budget
    assert (run / "best.pt").exists()
    assert validations(run) == [progress["step"]]  # the stopped run validated where it ended


def count_closes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The TensorBoard writers closed from now on."""
    from torch.utils.tensorboard import SummaryWriter

    closed: list[object] = []
    close = SummaryWriter.close

    def counted(writer: SummaryWriter) -> None:
        closed.append(writer)
        close(writer)

    monkeypatch.setattr(SummaryWriter, "close", counted)
    return closed


@pytest.mark.slow
def test_tensorboard_gets_the_metrics(tmp_path: Path, toy_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    closed = count_closes(monkeypatch)
    run = tmp_path / "run"
    train(run, toy_corpus, max_steps=4, log_every=1, validate_every=2)
    assert len(closed) == 1
    assert list((run / "tensorboard").iterdir()), "no event file"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()  # the writer was closed: every event is on disk
    records = metrics(run)
    for tag in ("loss", "lr", "dev_loss", "dev_bleu"):
        logged = [(int(r["step"]), r[tag]) for r in records if tag in r]
        scalars = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [step for step, _ in scalars] == [step for step, _ in logged], tag
        assert [value for _, value in scalars] == pytest.approx([value for _, value in logged], rel=1e-6), tag
    assert [e.step for e in events.Scalars("dev_bleu")] == [2, 4]
