"""Experiments made of whole training runs (``scripts/compare_cells.py``, ``scripts/ablations.py``).

Each run is ``seq2seq train CONFIG`` in a subprocess on one thread for exactly a given number
of updates (no epoch or time limit, no early stop), optionally followed by ``seq2seq
evaluate`` on its best.pt; several run at a time, and each leaves ``DIR/NAME.json`` (written
atomically as it ends) and its output in ``DIR/NAME.log``. A run whose JSON holds the same
settings and no error is not run again, so the same command continues a stopped experiment;
a failed or interrupted one runs again. A finished run whose settings differ only in a smaller
``training.max_steps`` is resumed from its ``last.pt`` to the new budget: resume is exact, the
learning-rate schedule's state included, so with budgets that are multiples of
``validate_every`` that is the run trained straight to it, and a longer budget costs only the
updates it adds. Runs are subprocesses (not
in-process threads) so that each has its own one-thread torch and a diverged run is a
result, not a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.atomic import atomic_open
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.train.logs import read_metrics, summarize_metrics

__all__ = ["TrainingRun", "budget", "check_flags", "outcome", "parser", "run_trainings", "write_json"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    """One run: ``seq2seq train config --set overrides...`` in ``DIR/name``; ``record`` (what
    identifies the run in a table, e.g. its cell and seed) goes into its JSON; ``evaluate``, when
    given, are the flags of a ``seq2seq evaluate --json`` of its best.pt after training."""

    name: str
    config: str
    overrides: tuple[str, ...]
    record: dict[str, Any] = field(default_factory=dict)
    evaluate: tuple[str, ...] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """What a saved result must hold to count as this run done."""
        settings: dict[str, Any] = {"config": self.config, "set": list(self.overrides)}
        return settings if self.evaluate is None else {**settings, "evaluate": list(self.evaluate)}


def parser(description: str | None, steps: int) -> argparse.ArgumentParser:
    """A script's parser with the flags every experiment of training runs has: ``config``
    (optional: not needed with ``--report-only``), ``--out-dir``, ``--seeds``, ``--steps``
    (default ``steps``), ``--validate-every``, ``--jobs``, ``--set`` and ``--report-only``."""
    flags = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_argument("config", nargs="?", help="the base run config (not needed with --report-only)")
    flags.add_argument("--out-dir", required=True)
    flags.add_argument("--seeds", default="1,2", help="comma-separated training seeds (default: %(default)s)")
    flags.add_argument("--steps", type=int, default=steps, help="updates per run (default: %(default)s)")
    flags.add_argument("--validate-every", type=int, default=250, help="updates (default: %(default)s)")
    flags.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default: %(default)s)")
    flags.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="base config overrides")
    flags.add_argument("--report-only", action="store_true", help="tabulate the runs already in --out-dir")
    return flags


def check_flags(args: argparse.Namespace) -> list[int]:
    """The seeds of a :func:`parser`'s ``args`` that will train, after checking that
    CONFIG is given and the budget flags; :class:`ConfigError` naming the flag otherwise."""
    if not args.config:
        raise ConfigError("give CONFIG, or --report-only to tabulate the runs in --out-dir")
    for name, value in (("--steps", args.steps), ("--validate-every", args.validate_every), ("--jobs", args.jobs)):
        if value < 1:
            raise ConfigError(f"{name}: {value} must be at least 1")
    seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
    if not seeds or not all(s.isdigit() for s in seeds):
        raise ConfigError(f"--seeds: {args.seeds!r}: give comma-separated non-negative integers, e.g. 1,2")
    return [int(s) for s in seeds]


def outcome(
    script: str, experiment: Callable[[argparse.Namespace], tuple[str, list[str]]], args: argparse.Namespace
) -> tuple[int, str, list[str]]:
    """``experiment(args)`` -> (its table, the errors of its failed runs) as the command
    ``script`` ends: (exit status, its output, its lines for stderr). Status 0; 1 when a run
    failed; 2 for a config, run directory or checkpoint that cannot be used (the error, naming
    it); 130 on Ctrl-C (the same command continues with the runs not yet done)."""
    try:
        table, failed = experiment(args)
    except (Seq2SeqError, OSError) as e:
        return 2, "", [f"{script}: error: {e}"]
    except KeyboardInterrupt:
        return 130, "", [f"{script}: interrupted; the same command continues with the runs not yet done"]
    return (1 if failed else 0), table, [f"{script}: {line}" for line in failed]


def budget(seed: int, steps: int, validate_every: int) -> list[str]:
    """The overrides of a run of exactly ``steps`` updates with training seed ``seed``, validated
    every ``validate_every`` updates, on one thread: every run of an experiment gets the same."""
    return [
        f"training.seed={seed}",
        f"training.max_steps={steps}",
        "training.max_epochs=0",
        "training.max_minutes=0",
        "training.patience=0",
        f"training.validate_every={validate_every}",
        "training.threads=1",
    ]


def write_json(path: Path, value: Any) -> None:
    """``value`` as strict JSON (a non-finite number as null), written atomically."""

    def plain(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(plain(value), indent=1, allow_nan=False) + "\n")


def _finished(path: Path) -> dict[str, Any] | None:
    """The settings of the finished run saved at ``path``; None when it is absent, half-written,
    not a result or a failed run: then it runs (again)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(previous, dict) and isinstance(previous.get("settings"), dict) and "error" not in previous
    return previous["settings"] if ok else None


def _max_steps(overrides: Sequence[str]) -> tuple[list[str], int]:
    """``overrides`` without ``training.max_steps=N``, and N (0 when absent or not a number)."""
    prefix = "training.max_steps="
    steps = [s[len(prefix) :] for s in overrides if s.startswith(prefix)]
    n = steps[-1] if steps else "0"
    return [s for s in overrides if not s.startswith(prefix)], int(n) if n.isdigit() else 0


def _extends(run: TrainingRun, finished: dict[str, Any], run_dir: Path) -> bool:
    """Whether the ``finished`` run's settings are ``run``'s but for a smaller
    ``training.max_steps``, and its ``last.pt`` is there to continue it."""
    overrides = finished.get("set")
    if not isinstance(overrides, list) or not all(isinstance(s, str) for s in overrides):
        return False
    before, after = _max_steps(overrides), _max_steps(run.overrides)
    same = {**finished, "set": before[0]} == {**run.settings, "set": after[0]}
    return same and 0 < before[1] < after[1] and (run_dir / "last.pt").is_file()


def _train(run: TrainingRun, directory: Path) -> dict[str, Any] | None:
    """Run one training (and its evaluation) unless it is done, resuming a shorter finished one;
    its result, or None if skipped."""
    path, run_dir = directory / f"{run.name}.json", directory / run.name
    finished = _finished(path)
    if finished == run.settings:
        return None
    extend = finished is not None and _extends(run, finished, run_dir)
    seq2seq = [sys.executable, "-m", "seq2seq"]
    train = [*seq2seq, "train", run.config, "--run-dir", str(run_dir), "--resume" if extend else "--overwrite"]
    train += [x for s in run.overrides for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (directory / f"{run.name}.log").open("a" if extend else "w", encoding="utf-8") as out:
        done = subprocess.run(train, stdout=out, stderr=out, text=True, env=env, check=False)
        if done.returncode == 0 and run.evaluate is not None:
            test = [*seq2seq, "evaluate", "--checkpoint", str(run_dir / "best.pt"), "--json", "--threads", "1"]
            done = subprocess.run([*test, *run.evaluate], stdout=subprocess.PIPE, stderr=out, text=True, env=env)
    result: dict[str, Any] = {**run.record, "settings": run.settings}
    if done.returncode:  # a diverged run is a result too: its table cell says so
        result["error"] = f"{run.name} failed (exit {done.returncode}); see {directory / f'{run.name}.log'}"
    else:
        from seq2seq.checkpoint import read_checkpoint

        result.update(summarize_metrics(read_metrics(run_dir / "metrics.jsonl")))
        result["parameters"] = sum(v.numel() for v in read_checkpoint(run_dir / "best.pt").weights.values())
        if run.evaluate is not None:
            result["evaluation"] = json.loads(done.stdout)
    write_json(path, result)
    return result


def run_trainings(
    runs: Sequence[TrainingRun],
    directory: Path,
    jobs: int,
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[str]:
    """Run every run not already done in ``directory``, ``jobs`` at a time (at most the cores:
    each has one thread), calling ``on_done(name, result)`` as each ends; the errors of the
    runs that failed. On Ctrl-C no more runs start (the running ones stop on the same signal)."""
    directory.mkdir(parents=True, exist_ok=True)

    def one(run: TrainingRun) -> str:
        result = _train(run, directory)
        if result is None:
            return ""
        if on_done is not None:
            on_done(run.name, result)
        return str(result.get("error", ""))

    pool = ThreadPoolExecutor(jobs)
    try:
        errors = [e for e in pool.map(one, runs) if e]
    finally:
        pool.shutdown(cancel_futures=True)
    log.info("%d runs in %s, %d failed", len(runs), directory, len(errors))
    return errors
