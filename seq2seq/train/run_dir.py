"""The run directory: refuse to clobber a finished run, clear what --overwrite replaces, and
check that --resume continues the same data and model."""

from __future__ import annotations

import logging
from pathlib import Path

from seq2seq.config import RunConfig, config_to_dict
from seq2seq.errors import RunDirError

log = logging.getLogger(__name__)


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
    if overwrite and run_dir.exists():
        for name in ("last.pt", "best.pt", "metrics.jsonl", "spm.model", "src.model", "tgt.model"):
            (run_dir / name).unlink(missing_ok=True)
        for path in run_dir.glob("ckpt-*.pt"):
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


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
