"""DistributedDataParallel under torchrun, two gloo processes on the CPU: the same update as
one process over both ranks' batches; resume after a kill, across uneven epochs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import TINY, data_overrides, write_toy_corpus

from seq2seq.train.distributed import World, shard

ROOT = Path(__file__).resolve().parents[1]
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


def test_ddp_step_equals_one_process_over_both_ranks_batches(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    steps = ["--set", "training.max_steps=2", "--set", "training.validate_every=100", *NO_DROPOUT]
    subprocess.run(train_cmd(tmp_path / "ddp", corpus, *steps), check=True, env=ENV, timeout=300)
    # Rank r takes batches r, r + 2, ... of the epoch; one process with accumulate 2 takes
    # the same pairs of batches in each update.
    single = [*steps, "--set", "training.accumulate=2"]
    subprocess.run(train_cmd(tmp_path / "one", corpus, *single, nproc=1), check=True, env=ENV, timeout=300)
    ddp, one = last(tmp_path / "ddp"), last(tmp_path / "one")
    assert ddp["train_state"]["progress"]["step"] == one["train_state"]["progress"]["step"] == 2
    for name, weight in one["model"].items():
        torch.testing.assert_close(ddp["model"][name], weight, atol=1e-6, rtol=1e-5)


def test_ddp_run_killed_midway_resumes(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    args = [
        "--set",
        "training.max_steps=100000",
        "--set",
        "training.save_every=1",
        "--set",
        "training.validate_every=500",
    ]
    proc = subprocess.Popen(train_cmd(run, corpus, *args), env=ENV, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (run / "last.pt").exists() and last(run)["train_state"]["progress"]["step"] >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("training did not reach step 3")
    finally:  # SIGKILL the launcher and its workers (killing torchrun alone orphans them)
        os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", str(run)], check=False)
        proc.wait()
    time.sleep(1)
    killed = last(run)["train_state"]["progress"]
    killed_at = killed["step"]
    resume = ["--resume", "--set", f"training.max_steps={killed_at + 4}", "--set", "training.save_every=0"]
    subprocess.run(train_cmd(run, corpus, *args, *resume), check=True, env=ENV, timeout=300)
    resumed = last(run)["train_state"]["progress"]
    assert resumed["step"] == killed_at + 4
    # The toy corpus makes an odd number of batches an epoch (3 per rank): the resumed run
    # crossed an epoch's end with uneven data and did not hang.
    assert resumed["epoch"] > killed["epoch"]
    assert not list(run.glob(".*.tmp")), "a write cut short by the kill is cleaned up on resume"
