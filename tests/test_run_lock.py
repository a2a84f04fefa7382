"""One training per run directory (an flock on RUN_DIR/.lock, naming its holder, gone with its
process), --resume with --overwrite refused, --resume on changed training data refused unless
--allow-data-change, and a directory left by a start that failed before its first checkpoint
started again without --overwrite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, data_overrides, write_toy_corpus

from seq2seq.checkpoint import read_checkpoint
from seq2seq.cli import main
from seq2seq.errors import RunDirError
from seq2seq.train.lock import RunLock
from seq2seq.train.run_dir import open_run_dir

HOLD = "import sys, time; from pathlib import Path; from seq2seq.train.lock import RunLock; " + (
    "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(120)"
)


def train(run: Path, corpus: Path, *flags: str) -> int:
    return main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *flags])


def test_a_held_lock_refuses_a_training_at_once_and_dies_with_its_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        corpus = write_toy_corpus(tmp_path / "corpus")
        for flags in ([], ["--resume"], ["--overwrite"]):
            started = time.monotonic()
            assert train(run, corpus, *flags) == 2
            err = capsys.readouterr().err
            who = f"another training (process {holder.pid} on {socket.gethostname()}) is using this run directory"
            assert who in err, err
            assert time.monotonic() - started < 10  # refused before reading any data
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait()
    lock = RunLock(run)
    lock.acquire()
    assert (run / ".lock").read_text(encoding="utf-8").split()[0] == str(os.getpid())
    lock.release()


def test_resume_with_overwrite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    assert train(tmp_path / "run", corpus, "--resume", "--overwrite") == 2
    assert "--resume continues the run, --overwrite deletes it: pass one of them" in capsys.readouterr().err


def test_what_a_start_leaves_before_its_first_checkpoint_may_start_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl", "spm.model", ".last.pt.abc.tmp", ".lock"):
        (run / name).write_text("left over", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"no last.pt to resume from \(it stopped before its first checkpoint; start"):
        open_run_dir(run, resume=True, overwrite=False)
    open_run_dir(run, resume=False, overwrite=False).release()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]

    for name in ("config.yaml", "notes.txt"):  # a file no run writes: not a failed start
        (run / name).write_text("mine", encoding="utf-8")
    with pytest.raises(RunDirError, match="exists and is not empty"):
        open_run_dir(run, resume=False, overwrite=False)
    (run / "notes.txt").unlink()
    (run / "best.pt").write_text("a checkpoint", encoding="utf-8")  # a run that got somewhere
    with pytest.raises(RunDirError, match="exists and is not empty"):
        open_run_dir(run, resume=False, overwrite=False)


@pytest.mark.slow
def test_a_failed_start_is_started_again_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    missing_dev = ["--set", f"data.dev.path={tmp_path}/nowhere"]
    assert train(run, corpus, *missing_dev) == 2  # after the config and SentencePiece were written
    assert "nowhere" in capsys.readouterr().err
    assert {"config.yaml", "spm.model"} <= {p.name for p in run.iterdir()} and not list(run.glob("*.pt"))
    assert train(run, corpus, "--set", "training.max_steps=2") == 0
    assert read_checkpoint(run / "last.pt").train_state["progress"]["step"] == 2  # type: ignore[index]


@pytest.mark.slow
def test_a_second_training_refuses_at_once_naming_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    sets = ["--set", "training.max_steps=100000", "--set", "training.log_every=1"]
    cmd = [sys.executable, "-m", "seq2seq", "train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while first.poll() is None and time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text(encoding="utf-8").strip():  # training has begun
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first training ended early"
        started = time.monotonic()
        assert train(run, corpus, *sets) == 2
        assert f"another training (process {first.pid} on " in capsys.readouterr().err
        assert time.monotonic() - started < 10
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "seq2seq train: interrupted by SIGTERM at step" in err, err


@pytest.mark.slow
def test_resume_on_changed_data_is_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    assert train(run, corpus, "--set", "training.max_steps=4") == 0
    source = corpus / "train.src"
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    source.write_text("".join([lines[0].replace(" ", " Hund ", 1), *lines[1:]]), encoding="utf-8")  # in place
    more = ["--resume", "--set", "training.max_steps=6"]
    capsys.readouterr()
    assert train(run, corpus, *more) == 2
    err = capsys.readouterr().err
    assert "--resume on other training data than last.pt was trained on (src_pieces " in err, err
    assert "pass --allow-data-change" in err
    assert train(run, corpus, *more, "--allow-data-change") == 0
    assert read_checkpoint(run / "last.pt").train_state["progress"]["step"] == 6  # type: ignore[index]
