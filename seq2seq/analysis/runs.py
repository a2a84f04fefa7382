"""Run an experiment's independent runs in parallel processes, one JSON result per run.

Each run is a module-level function (so that a spawned process can import it) returning a
result with ``to_dict()``; its dict is written to ``DIRECTORY/NAME.json`` atomically as soon
as the run finishes, so an interrupted experiment keeps every finished run, and a later call
with the same settings skips them. Every process runs one intra-op thread, so that runs in
parallel get equal shares of the CPU and their timings compare.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq.atomic import atomic_open
from seq2seq.config import CELLS, parse_cells
from seq2seq.errors import ConfigError, DataError

__all__ = ["Run", "checked_cells", "read_results", "run_all", "script_parser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run: ``function(*args)`` -> a result with ``to_dict()``, saved as ``name``.json.
    A saved result whose ``settings`` equal ``settings`` counts as done."""

    name: str
    function: Callable[..., Any]
    args: tuple[Any, ...]
    settings: dict[str, Any]


def _done(run: Run, directory: Path) -> bool:
    path = directory / f"{run.name}.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("settings") == run.settings)
    except (OSError, ValueError, AttributeError):  # absent, half-written by another tool, not a dict
        return False


def _save(directory: Path, name: str, result: Any) -> dict[str, Any]:
    data: dict[str, Any] = result.to_dict()
    with atomic_open(directory / f"{name}.json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return data


def run_all(
    runs: Sequence[Run], directory: Path, jobs: int = 1, on_done: Callable[[str, dict[str, Any]], None] | None = None
) -> int:
    """Run every run not already saved in ``directory`` with ``jobs`` processes (1: in
    this process, with one intra-op thread meanwhile), saving each result as it
    finishes and calling ``on_done(name, result_dict)``. Returns how many runs ran."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    directory.mkdir(parents=True, exist_ok=True)
    todo = [run for run in runs if not _done(run, directory)]
    log.info("%d runs, %d already saved in %s", len(runs), len(runs) - len(todo), directory)
    for name, result in _results(todo, jobs):
        data = _save(directory, name, result)
        if on_done is not None:
            on_done(name, data)
    return len(todo)


def _results(runs: list[Run], jobs: int) -> Iterator[tuple[str, Any]]:
    if jobs == 1 or len(runs) <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for run in runs:
                yield run.name, run.function(*run.args)
        finally:  # the caller's process goes on as it was
            torch.set_num_threads(threads)
        return
    # spawn, not fork: a forked child inherits the parent's torch thread pools and locks.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures: dict[Future[Any], str] = {pool.submit(run.function, *run.args): run.name for run in runs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:  # an error or Ctrl-C: do not start the runs still queued
            for future in futures:
                future.cancel()
            raise


def read_results(directory: Path, prefix: str) -> list[dict[str, Any]]:
    """The results saved as ``directory/prefix*.json``, in name order; :class:`DataError`
    naming the file when one is unreadable, when runs of different settings are mixed, and
    when there are none."""
    results, first = [], None
    for path in sorted(directory.glob(f"{prefix}*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read this result ({e}); delete it to run it again") from e
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
            raise DataError(f"{path}: not a result of this experiment (no settings); delete or move it")
        if first is None:
            first = (path, data["settings"])
        elif data["settings"] != first[1]:
            raise DataError(f"{path} and {first[0]} were run with different settings; use one --out-dir per setting")
        results.append(data)
    if not results:
        raise DataError(f"no {prefix}*.json results in {directory}; run the experiment first (without --report-only)")
    return results


def script_parser(description: str | None) -> argparse.ArgumentParser:
    """The flags of every analysis script: --out-dir, --cells, --seeds, --jobs, --report-only
    (``scripts/long_range.py``, ``scripts/gradient_flow.py``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated (default: every cell)")
    parser.add_argument("--seeds", type=int_list, default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process and thread each")
    parser.add_argument("--report-only", action="store_true", help="tabulate and plot the results in --out-dir")
    return parser


def int_list(text: str) -> list[int]:
    """An argparse ``type``: comma-separated integers."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def checked_cells(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``--cells`` as a list; exits through ``parser.error`` on an unknown cell or ``--jobs`` below 1."""
    try:
        cells = parse_cells(str(args.cells))
    except ConfigError as e:
        parser.error(str(e))
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return cells
