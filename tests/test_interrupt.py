"""Training that ends early: SIGINT and SIGTERM save last.pt after a whole update and exit 130 / 143
with the command that resumes, and the resumed run ends bit-identical to one never interrupted
(under torchrun: the ranks stop together and rank 0 saves);
a diverging run (a learning rate far too high, or weights made NaN) skips its non-finite updates,
stops with a clear error and writes no non-finite checkpoint; metrics.jsonl is strict JSON."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, data_overrides, seeded_rng, write_toy_corpus

from seq2seq.checkpoint import read_checkpoint
from seq2seq.cli import main
from seq2seq.errors import TrainingError
from seq2seq.train import loop
from seq2seq.train.guard import DivergenceGuard, strict_json
from seq2seq.train.interrupt import Interrupted, Interrupts


def strict_records(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl read by a strict JSON reader (a bare NaN or Infinity fails)."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"metrics.jsonl holds a bare {constant}")

    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).weights


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{a.name}: {key} differs"


# --- fast: the pieces ---------------------------------------------------------------------


def test_a_deferred_signal_is_noted_and_a_second_one_raises() -> None:
    with Interrupts() as interrupts:
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert interrupts.requested and interrupts.signum == signal.SIGTERM
            with pytest.raises(Interrupted) as again:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs at the next bytecode
        assert again.value.again and again.value.exit_code == 130
    with Interrupts() as interrupts, pytest.raises(Interrupted) as first:
        os.kill(os.getpid(), signal.SIGTERM)  # not deferred: raises at once
        time.sleep(1)
    assert not first.value.again and first.value.exit_code == 143 and first.value.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the previous handlers are back


def test_the_guard_skips_and_stops_after_that_many_in_a_row(caplog: pytest.LogCaptureFixture) -> None:
    guard = DivergenceGuard(max_bad_updates=3, learning_rate=1.0)
    for step in range(1, 40):
        guard.record(step, True, 2.0, 1.0, last_saved=None)
    guard.record(40, False, math.nan, 1.0, last_saved=30)
    guard.record(41, False, 2.0, math.inf, last_saved=30)
    guard.record(42, True, 2.0, 1.0, last_saved=30)  # a good update ends the streak
    assert guard.state.bad_in_row == 0 and guard.state.skipped == 2
    guard.record(43, True, 100.0, 1.0, last_saved=30)
    assert "far above its running average" in caplog.text
    guard.record(44, False, math.nan, 1.0, last_saved=30)
    guard.record(45, False, math.nan, 1.0, last_saved=30)
    with pytest.raises(TrainingError, match=r"3 updates in a row \(to step 46\).*last.pt holds step 30"):
        guard.record(46, False, math.nan, math.nan, last_saved=30)


def test_strict_json_writes_non_finite_numbers_as_strings() -> None:
    record = {"step": 3, "loss": math.nan, "ppl": math.inf, "low": -math.inf, "lr": 1e-3}
    line = json.dumps(strict_json(record), allow_nan=False)
    assert json.loads(line) == {"step": 3, "loss": "nan", "ppl": "inf", "low": "-inf", "lr": 1e-3}
    assert math.isnan(float(json.loads(line)["loss"]))


# --- slow: real runs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An uninterrupted run of the tiny config, and the flags it was trained with."""
    root = tmp_path_factory.mktemp("interrupt")
    corpus = write_toy_corpus(root / "corpus")
    flags = [*data_overrides(corpus), "--set", "training.log_every=1"]
    assert main(["train", TINY, "--run-dir", str(root / "straight"), *flags]) == 0
    return root / "straight", flags


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_and_the_resumed_run_is_bit_identical(
    straight: tuple[Path, list[str]], tmp_path: Path, sig: signal.Signals
) -> None:
    reference, flags = straight
    run = tmp_path / "run"
    at = seeded_rng(f"{sig.name} step").randint(2, 25)
    cmd = [sys.executable, "-m", "seq2seq", "train", TINY, "--run-dir", str(run), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        lines = metrics.read_text(encoding="utf-8").splitlines() if metrics.exists() else []
        if any(json.loads(line)["step"] >= at for line in lines if line.endswith("}")):
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, f"the run ended before step {at}: {err[-2000:]}"
    saved = read_checkpoint(run / "last.pt").train_state["progress"]["step"]  # type: ignore[index]
    assert saved >= at
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"seq2seq train: interrupted by {sig.name} at step {saved}; saved "), message
    assert message.endswith(f"resume with: seq2seq train {TINY} --run-dir {run} {' '.join(flags)} --resume")
    assert not list(run.glob(".*.tmp"))

    assert main(["train", TINY, "--run-dir", str(run), *flags, "--resume"]) == 0
    assert_same_weights(reference / "last.pt", run / "last.pt")
    assert_same_weights(reference / "best.pt", run / "best.pt")
    strict_records(run)


@pytest.mark.slow
def test_a_huge_learning_rate_stops_within_a_few_updates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(The config refuses an infinite rate; 1e30 overflows the recurrent layers at once.)"""
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    sets = ["--set", "training.learning_rate=1e30", "--set", "training.log_every=1", "--set", "training.save_every=1"]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]) == 2
    err = capsys.readouterr().err
    assert "training diverged: 5 updates in a row" in err and "training.learning_rate (1e+30)" in err, err
    records = strict_records(run)
    assert max(r["step"] for r in records) <= 6 and records[-1].get("skipped_updates", 0) >= 4
    for path in run.glob("*.pt"):  # a last.pt of step 1 at most, whose weights are finite
        assert all(torch.isfinite(t).all() for t in weights(path).values()), path


@pytest.mark.slow
def test_nan_weights_are_never_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weights made NaN by update 3: every later update is skipped, no checkpoint takes them
    (not the validations' best.pt, not the final last.pt) and the run fails."""
    update = loop.Trainer.update

    def poisoned(self: loop.Trainer, batches: list[Any]) -> tuple[float, int]:
        result = update(self, batches)
        if self.progress.step == 2:  # this was update 3
            with torch.no_grad():
                next(self.model.parameters()).fill_(math.nan)
        return result

    monkeypatch.setattr(loop.Trainer, "update", poisoned)
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    sets = ["--set", "training.max_bad_updates=100", "--set", "training.max_steps=12", "--set", "training.save_every=0"]
    sets += ["--set", "training.log_every=1"]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]) == 2
    err = capsys.readouterr().err
    assert "the weights are not finite at step 12, so last.pt was not written (there is no last.pt yet)" in err, err
    assert not list(run.glob("*.pt"))  # the validations at steps 10 and 12 saved nothing
    assert [r["dev_loss"] for r in strict_records(run) if "dev_loss" in r] == ["nan", "nan"]
    assert max(r.get("skipped_updates", 0) for r in strict_records(run)) == 9  # steps 4 to 12


@pytest.mark.slow
@pytest.mark.parametrize(("minutes", "saved_at"), [(1e-9, [1, 2, 3, 4]), (0.0, [4])])
def test_save_minutes_writes_last_pt_on_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes: float, saved_at: list[int]
) -> None:
    """A clock of a few microseconds writes last.pt after every update (what SIGKILL may lose);
    0 leaves it to the end of the run (validate_every and save_every out of the way)."""
    saves: list[int] = []
    save = loop.Trainer.save

    def counted(self: loop.Trainer, name: str, with_state: bool = True) -> None:
        if name == "last.pt":
            saves.append(self.progress.step)
        save(self, name, with_state)

    monkeypatch.setattr(loop.Trainer, "save", counted)
    corpus = write_toy_corpus(tmp_path / "corpus")
    sets = {"max_steps": 4, "validate_every": 1000, "save_every": 0, "save_minutes": minutes}
    flags = [x for key, value in sets.items() for x in ("--set", f"training.{key}={value}")]
    assert main(["train", TINY, "--run-dir", str(tmp_path / "run"), *data_overrides(corpus), *flags]) == 0
    assert sorted(set(saves)) == saved_at


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_once_and_every_rank_stops(tmp_path: Path) -> None:
    """torchrun passes SIGTERM on to its two workers; they agree to stop after the same update,
    rank 0 saves and tells how to resume, and the run resumes under torchrun."""
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*launcher, "-m", "seq2seq", "train", TINY, "--run-dir", str(run), *data_overrides(corpus)]
    cmd += ["--set", "training.threads=1", "--set", "training.log_every=1"]
    at = seeded_rng("DDP SIGTERM step").randint(2, 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "--set", "training.max_steps=100000"], stderr=subprocess.PIPE, text=True, env=env)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        lines = metrics.read_text(encoding="utf-8").splitlines() if metrics.exists() else []
        if any(json.loads(line)["step"] >= at for line in lines if line.endswith("}")):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    saved = read_checkpoint(run / "last.pt").train_state["progress"]["step"]  # type: ignore[index]
    assert saved >= at
    said = [line for line in err.splitlines() if line.startswith("seq2seq train: interrupted")]
    assert len(said) == 1 and f"interrupted by SIGTERM at step {saved}; saved" in said[0], err[-3000:]
    assert "resume with (through torchrun, as before): seq2seq train" in said[0]
    resume = [*cmd, "--set", f"training.max_steps={saved + 2}", "--resume"]
    subprocess.run(resume, check=True, env=env, timeout=300, capture_output=True)
    assert read_checkpoint(run / "last.pt").train_state["progress"]["step"] == saved + 2  # type: ignore[index]


def test_the_session_check_finds_bare_constants(tmp_path: Path) -> None:
    """conftest's strict_metrics check (run over every metrics.jsonl of the session) sees a
    bare NaN or Infinity, and only those."""
    from conftest import bare_constants

    path = tmp_path / "lenient.jsonl"  # not metrics.jsonl: the session check would find it
    path.write_text('{"loss": 1.0}\n{"loss": NaN}\nnot json\n{"loss": "nan"}\n{"a": -Infinity}\n', encoding="utf-8")
    assert [line.split(": ", 1)[1] for line in bare_constants(path)] == ['{"loss": NaN}', '{"a": -Infinity}']
