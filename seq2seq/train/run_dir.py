"""The run directory: one training at a time (:mod:`seq2seq.train.lock`), refuse to clobber a
finished run, clear what --overwrite replaces or what a start that failed before its first
checkpoint left, and check that --resume continues the same data and model."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seq2seq.atomic import atomic_open
from seq2seq.config import RunConfig, config_to_dict
from seq2seq.data.batching import ParallelData
from seq2seq.errors import RunDirError
from seq2seq.train.lock import LOCK_NAME, RunLock

log = logging.getLogger(__name__)

# Files that only a run writes: a directory with one of them may be cleared by --overwrite.
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "spm.model", "src.model", "tgt.model")
# What a start leaves before its first checkpoint: such a directory may simply be started again.
EARLY_FILES = frozenset({"config.yaml", "metrics.jsonl", "spm.model", "src.model", "tgt.model", "tensorboard"})
# Training pairs whose ids the data fingerprint hashes, spread evenly over the corpus.
FINGERPRINT_SAMPLE = 1000


def open_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> RunLock:
    """Make ``run_dir`` ready for a run as the flags ask, and lock it; the caller releases the
    lock when the run ends. The lock comes first: a second training is refused at once."""
    if resume and overwrite:
        raise RunDirError(f"{run_dir}: --resume continues the run, --overwrite deletes it: pass one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: --run-dir is a file, not a directory; choose another --run-dir")
    if resume and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory to resume; start without --resume")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{run_dir}: cannot create the run directory: {e.strerror}") from e
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        _prepare(run_dir, resume, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def _prepare(run_dir: Path, resume: bool, overwrite: bool) -> None:
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if resume:
        if not (run_dir / "last.pt").exists():
            why = "it stopped before its first checkpoint; " if entries and _early(entries) else ""
            raise RunDirError(f"{run_dir}: no last.pt to resume from ({why}start without --resume)")
        # A writer killed mid-write (SIGKILL, power loss) leaves its temporary file; the file it
        # was replacing is whole, so the leftover is only clutter.
        for stale in run_dir.glob(".*.tmp"):
            log.info("removing %s, left by a write that was killed", stale)
            stale.unlink()
        return
    if not entries:
        return
    if overwrite:
        clear_run(run_dir)
    elif _early(entries):
        log.info("%s: starting again the run that stopped before its first checkpoint", run_dir)
        _remove(entries)
    else:
        raise RunDirError(
            f"{run_dir}: run directory exists and is not empty; pass --resume to continue it, "
            "--overwrite to start over, or choose another --run-dir"
        )


def _early(entries: list[Path]) -> bool:
    """Whether ``entries`` are only what a start leaves before its first checkpoint."""
    return all(p.name in EARLY_FILES or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in entries)


def _remove(entries: list[Path]) -> None:
    for child in entries:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def clear_run(run_dir: Path) -> None:
    """Remove everything in ``run_dir`` (checkpoints, logs, SentencePiece models, TensorBoard
    events) but the lock this process holds, refusing a directory that holds none of a run's
    files: ``--overwrite`` pointed at the wrong directory must not empty it."""
    if not any((run_dir / name).exists() for name in RUN_FILES):
        raise RunDirError(
            f"{run_dir}: --overwrite, but this directory holds no run (none of {', '.join(RUN_FILES)}); "
            "it is left as it is: choose another --run-dir"
        )
    _remove([p for p in run_dir.iterdir() if p.name != LOCK_NAME])
    log.info("--overwrite: removed the previous run in %s", run_dir)


def write_config(config: RunConfig, path: Path) -> None:
    """Write the resolved ``config`` as YAML, atomically: an interrupted write leaves no half a config."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(config), f, sort_keys=False)


def check_resumable(saved: RunConfig, given: RunConfig, run_dir: Path) -> None:
    """A resumed run may change its training budget and search settings (e.g. more epochs,
    other threads), but not the data or the model it was trained on."""
    for section in ("data", "model"):
        if getattr(saved, section) != getattr(given, section):
            raise RunDirError(
                f"{run_dir}: --resume with a different `{section}` section than the run was "
                f"started with (see {run_dir}/config.yaml); resume with that config"
            )
    before, after = config_to_dict(saved), config_to_dict(given)
    changed = {
        f"{section}.{k}": v
        for section in ("training", "search")
        for k, v in after[section].items()
        if before[section][k] != v
    }
    if changed:
        log.info("--resume with changed settings: %s", changed)


def data_fingerprint(pairs: ParallelData) -> dict[str, Any]:
    """What identifies the training pairs a run trains on, cheaply even for millions of pairs:
    their number, their total pieces per side and a SHA-256 of the ids of an evenly spread
    sample of them (an edit elsewhere that keeps every count escapes it)."""
    n = len(pairs)
    digest = hashlib.sha256()
    for i in np.unique(np.linspace(0, max(n - 1, 0), num=min(n, FINGERPRINT_SAMPLE)).astype(np.int64)):
        for ids in (pairs.src_ids(int(i)), pairs.tgt_ids(int(i))):
            digest.update(ids.astype("<i4").tobytes() + b"|")
    return {"pairs": n, "src_pieces": len(pairs.src), "tgt_pieces": len(pairs.tgt), "sample_sha256": digest.hexdigest()}


def check_same_data(saved: dict[str, Any] | None, current: dict[str, Any], run_dir: Path, allow_change: bool) -> None:
    """Refuse to resume on training data other than the run's (e.g. files edited in place),
    unless ``allow_change`` (``--allow-data-change``)."""
    if saved is None:
        log.info("%s/last.pt predates data fingerprints: the training data are not checked", run_dir)
        return
    if saved == current:
        return
    changed = ", ".join(f"{k} {saved.get(k)} -> {v}" for k, v in current.items() if saved.get(k) != v)
    if not allow_change:
        raise RunDirError(
            f"{run_dir}: --resume on other training data than last.pt was trained on ({changed}); "
            "resume with the run's data, or pass --allow-data-change to go on with these"
        )
    log.warning("--allow-data-change: resuming on other training data (%s)", changed)
