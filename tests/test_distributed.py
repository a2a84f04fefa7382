"""DistributedDataParallel under torchrun, two gloo processes on the CPU: the same update as
one process over both ranks' batches; resume after a kill, across uneven epochs."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, data_overrides, seeded_rng

from seq2seq.train.distributed import World, shard

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
NO_DROPOUT = ["--set", "model.encoder.dropout=0", "--set", "model.decoder.dropout=0"]


def train_cmd(run: Path, corpus: Path, *extra: str, nproc: int = 2) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    seq2seq = ["-m", "seq2seq", "train", TINY, "--run-dir", str(run), "--set", "training.threads=1"]
    return [*(launcher if nproc > 1 else [sys.executable]), *seq2seq, *data_overrides(corpus), *extra]


def last(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)


def test_shard_gives_every_rank_the_same_number_of_batches() -> None:
    plan = list(range(7))
    parts = [shard(plan, World(rank=r, size=3)) for r in range(3)]
    assert parts == [[0, 3], [1, 4], [2, 5]]
    assert shard(plan, World()) == plan


@pytest.mark.slow
def test_ddp_step_equals_one_process_over_both_ranks_batches(tmp_path: Path, toy_corpus: Path) -> None:
    steps = ["--set", "training.max_steps=2", "--set", "training.validate_every=100", *NO_DROPOUT]
    subprocess.run(train_cmd(tmp_path / "ddp", toy_corpus, *steps), check=True, env=ENV, timeout=300)
    # Rank r takes batches r, r + 2, ... of the epoch; one process with accumulate 2 takes
    # the same pairs of batches in each update.
    single = [*steps, "--set", "training.accumulate=2"]
    subprocess.run(train_cmd(tmp_path / "one", toy_corpus, *single, nproc=1), check=True, env=ENV, timeout=300)
    ddp, one = last(tmp_path / "ddp"), last(tmp_path / "one")
    assert ddp["train_state"]["progress"]["step"] == one["train_state"]["progress"]["step"] == 2
    for name, weight in one["model"].items():
        torch.testing.assert_close(ddp["model"][name], weight, atol=1e-6, rtol=1e-5)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a killed orphan may stay a zombie where nobody reaps it


def kill_tree(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGKILL the launcher and its workers, as a crash or ``kill -9`` would, then wait until
    none is left to write into the run directory. torchrun starts each worker in a session of
    its own, so neither killing the launcher nor its process group reaches them."""
    tree = process_tree(proc.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in tree):
        if time.monotonic() > deadline:
            pytest.fail(f"processes {tree} outlived SIGKILL")
        time.sleep(0.1)


@pytest.mark.slow
def test_ddp_run_killed_midway_resumes(tmp_path: Path, toy_corpus: Path) -> None:
    run = tmp_path / "run"
    kill_at = seeded_rng("DDP kill step").randint(1, 8)
    args = ["--set", "training.max_steps=100000", "--set", "training.save_every=1"]
    args += ["--set", "training.validate_every=500"]
    proc = subprocess.Popen(train_cmd(run, toy_corpus, *args), env=ENV)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "last.pt").exists() and last(run)["train_state"]["progress"]["step"] >= kill_at:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"training did not reach step {kill_at} (exit status {proc.poll()})")
    finally:
        kill_tree(proc)
    killed = last(run)["train_state"]["progress"]
    killed_at = killed["step"]
    resume = ["--resume", "--set", f"training.max_steps={killed_at + 4}", "--set", "training.save_every=0"]
    subprocess.run(train_cmd(run, toy_corpus, *args, *resume), check=True, env=ENV, timeout=300)
    resumed = last(run)["train_state"]["progress"]
    assert resumed["step"] == killed_at + 4
    # The toy corpus makes an odd number of batches an epoch (3 per rank): the resumed run
    # crossed an epoch's end with uneven data and did not hang.
    assert resumed["epoch"] > killed["epoch"]
    assert not list(run.glob(".*.tmp")), "a write cut short by the kill is cleaned up on resume"
