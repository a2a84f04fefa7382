"""The run directory: refuse to clobber a finished run, clear what --overwrite replaces, and
check that --resume continues the same data and model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from seq2seq.atomic import atomic_open
from seq2seq.config import RunConfig, config_to_dict
from seq2seq.errors import RunDirError

log = logging.getLogger(__name__)

# Files that only a run writes: a directory with one of them may be cleared by --overwrite.
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "spm.model", "src.model", "tgt.model")


def open_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (run_dir / "last.pt").exists():
            raise RunDirError(f"{run_dir}: no last.pt to resume from; start without --resume")
        # A writer killed mid-write (SIGKILL, power loss) leaves its temporary file; the file it
        # was replacing is whole, so the leftover is only clutter.
        for stale in run_dir.glob(".*.tmp"):
            log.info("removing %s, left by a write that was killed", stale)
            stale.unlink()
        return
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(
            f"{run_dir}: run directory exists and is not empty; pass --resume to continue it, "
            "--overwrite to start over, or choose another --run-dir"
        )
    if overwrite and run_dir.exists() and any(run_dir.iterdir()):
        clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def clear_run(run_dir: Path) -> None:
    """Remove everything in ``run_dir`` (checkpoints, logs, SentencePiece models, TensorBoard
    events), refusing a directory that holds none of a run's files: ``--overwrite`` pointed
    at the wrong directory must not empty it."""
    if not any((run_dir / name).exists() for name in RUN_FILES):
        raise RunDirError(
            f"{run_dir}: --overwrite, but this directory holds no run (none of {', '.join(RUN_FILES)}); "
            "it is left as it is: choose another --run-dir"
        )
    for child in run_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
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
