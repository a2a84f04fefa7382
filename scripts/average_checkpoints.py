#!/usr/bin/env python
"""Average the weights of several checkpoints of one model into a new checkpoint.

    python scripts/average_checkpoints.py CKPT [CKPT ...] --output OUT.pt
    python scripts/average_checkpoints.py --run-dir DIR --last N --output OUT.pt

Every floating-point tensor of ``model`` becomes the element-wise mean over the inputs
(accumulated in float64, stored in the input's dtype); integer and bool buffers must be
equal in all inputs and are copied. The inputs must hold the same tensor names and shapes,
the same ``model`` and ``data`` config sections and the same vocabularies. The output has
the first input's config, vocabularies and shortlist, the averaged weights and ``train_state: None``
(an average is no point to resume training from), so it serves ``seq2seq translate`` and
``seq2seq evaluate`` like ``best.pt``.

``--run-dir DIR --last N`` takes the N files ``DIR/ckpt-{step:07d}.pt`` with the highest
steps. Averaging the last checkpoints of a run is Vaswani et al. (2017), "Attention Is All
You Need", section 6.1.

Exit codes: 0 done, 2 unreadable or incompatible inputs (the message names the files and
the key).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import FORMAT, atomic_save, read_payload
from seq2seq.config import config_from_dict, config_to_dict
from seq2seq.errors import CheckpointError, ConfigError

CKPT_NAME = re.compile(r"ckpt-(\d+)\.pt")
CHECKED_SECTIONS = ("model", "data")  # what fixes the architecture and the vocabularies


class AverageError(ValueError):
    """Inputs that cannot be averaged; the message names the files and the key."""


def run_dir_checkpoints(run_dir: Path, last: int) -> list[Path]:
    """The ``last`` files ``run_dir/ckpt-*.pt`` with the highest step numbers, oldest first."""
    if not run_dir.is_dir():
        raise AverageError(f"{run_dir}: no such run directory")
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CKPT_NAME.fullmatch(p.name))]
    if len(found) < last:
        raise AverageError(f"{run_dir}: --last {last} asks for {last} ckpt-*.pt files, found {len(found)}")
    # Sort by the parsed step, not the name, so an unpadded or wider step still orders right.
    return [p for _, p in sorted(found)[-last:]]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint's plain-data payload (see ``seq2seq.checkpoint``), on the CPU."""
    try:
        return read_payload(path)
    except CheckpointError as e:
        raise AverageError(str(e)) from None


def config_differences(a: Any, b: Any, prefix: str) -> Iterator[str]:
    """Dotted keys where two plain-data config trees differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            yield from config_differences(a.get(key), b.get(key), f"{prefix}.{key}")
    elif a != b:
        yield prefix


def _complete(config: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        return config_to_dict(config_from_dict(config))
    except ConfigError as e:
        raise AverageError(f"{path}: {e}") from None


def check_compatible(first: dict[str, Any], first_path: Path, other: dict[str, Any], other_path: Path) -> None:
    """Raise ``AverageError`` unless ``other`` has the architecture and vocabularies of ``first``."""
    pair = f"{first_path} and {other_path}"
    # Compare complete configs: a checkpoint written before a key existed holds its default.
    configs = [_complete(first["config"], first_path), _complete(other["config"], other_path)]
    for section in CHECKED_SECTIONS:
        diffs = list(config_differences(configs[0].get(section), configs[1].get(section), section))
        if diffs:
            raise AverageError(f"{pair}: configs differ at {', '.join(diffs)}")
    for side in ("src", "tgt"):
        if first["vocabs"][side] != other["vocabs"][side]:
            raise AverageError(f"{pair}: the {side} vocabularies differ")
    a, b = first["model"], other["model"]
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))
        raise AverageError(f"{pair}: model tensors differ in name: {', '.join(only)}")
    for key in a:
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            raise AverageError(
                f"{pair}: model tensor {key} is {a[key].dtype} {tuple(a[key].shape)} vs "
                f"{b[key].dtype} {tuple(b[key].shape)}"
            )
        if not a[key].is_floating_point() and not torch.equal(a[key], b[key]):
            raise AverageError(f"{pair}: integer buffer {key} differs (only floating-point tensors are averaged)")


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """The averaged checkpoint payload. Inputs are read one at a time, so memory holds the
    running sums and one input, however many files there are."""
    if not paths:
        raise AverageError("no checkpoints to average")
    first = read_checkpoint(paths[0])
    sums = {k: v.to(torch.float64) for k, v in first["model"].items() if v.is_floating_point()}
    for path in paths[1:]:
        other = read_checkpoint(path)
        check_compatible(first, paths[0], other, path)
        for key, total in sums.items():
            total += other["model"][key].to(torch.float64)
        del other  # free this input before the next is read
    model = {
        key: (sums[key] / len(paths)).to(value.dtype) if key in sums else value.clone()
        for key, value in first["model"].items()
    }
    return {
        "format": FORMAT,
        "config": first["config"],
        "vocabs": first["vocabs"],
        "model": model,
        "train_state": None,
        "shortlist": first.get("shortlist"),
    }


def _step(path: Path) -> str:
    """The " (step N)" suffix for a ``ckpt-*.pt`` name, "" for any other."""
    m = CKPT_NAME.fullmatch(path.name)
    return f" (step {int(m.group(1))})" if m else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path, metavar="CKPT", help="checkpoints to average")
    parser.add_argument("--run-dir", type=Path, help="average the --last N DIR/ckpt-*.pt with the highest steps")
    parser.add_argument("--last", type=int, metavar="N", help="how many checkpoints of --run-dir")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint to write")
    args = parser.parse_args(argv)
    run_dir: Path | None = args.run_dir
    last: int | None = args.last
    paths: list[Path] = args.checkpoints
    if run_dir is not None:
        if paths:
            parser.error("give either CKPT files or --run-dir, not both")
        if last is None or last < 1:
            parser.error("--run-dir needs --last N with N >= 1")
    elif not paths:
        parser.error("give CKPT files or --run-dir DIR --last N")
    elif last is not None:
        parser.error("--last goes with --run-dir")

    try:
        if run_dir is not None and last is not None:
            paths = run_dir_checkpoints(run_dir, last)
        payload = average_checkpoints(paths)
    except (AverageError, OSError) as e:
        print(f"average_checkpoints.py: error: {e}", file=sys.stderr)
        return 2
    try:
        atomic_save(payload, args.output)
    except OSError as e:
        print(f"average_checkpoints.py: error: {args.output}: cannot write: {e}", file=sys.stderr)
        return 2

    model = payload["model"]
    averaged = [v for v in model.values() if v.is_floating_point()]
    print(f"averaged {len(paths)} checkpoint(s):")
    for path in paths:
        print(f"  {path}{_step(path)}")
    print(
        f"{len(averaged)} floating-point tensors ({sum(v.numel() for v in averaged):,} values) averaged, "
        f"{len(model) - len(averaged)} integer/bool buffers copied -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
