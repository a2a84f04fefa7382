"""Checkpoint averaging: the element-wise mean of several checkpoints of one model.

Averaging the weights of the last checkpoints of a run is Vaswani et al. (2017), "Attention
Is All You Need", section 6.1. Every floating-point tensor of the weights becomes the mean
over the inputs (accumulated in float64, stored in the input's dtype); integer and bool
buffers must be equal in all inputs and are copied. The inputs must hold the same tensor
names and shapes, the same ``model`` and ``data`` config sections and the same
vocabularies. The result has the first input's config, vocabularies and shortlist, the
averaged weights and no training state (an average is no point to resume training from),
so it serves ``seq2seq translate`` and ``seq2seq evaluate`` like ``best.pt``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import Stored, read_checkpoint, vocab_difference
from seq2seq.config import config_to_dict
from seq2seq.errors import CheckpointError

# The files ``training.keep_checkpoints`` keeps in a run directory.
CKPT_NAME = re.compile(r"ckpt-(\d+)\.pt")
CHECKED_SECTIONS = ("model", "data")  # what fixes the architecture and the vocabularies


def checkpoint_step(path: Path) -> int | None:
    """The step of a ``ckpt-{step}.pt`` file, ``None`` for any other name."""
    m = CKPT_NAME.fullmatch(path.name)
    return int(m.group(1)) if m else None


def run_dir_checkpoints(run_dir: Path, last: int) -> list[Path]:
    """The ``last`` files ``run_dir/ckpt-*.pt`` with the highest step numbers, oldest first."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    found = [(step, p) for p in run_dir.iterdir() if (step := checkpoint_step(p)) is not None]
    if len(found) < last:
        raise CheckpointError(f"{run_dir}: --last {last} asks for {last} ckpt-*.pt files, found {len(found)}")
    # Sort by the parsed step, not the name, so an unpadded or wider step still orders right.
    return [p for _, p in sorted(found)[-last:]]


def config_differences(a: Any, b: Any, prefix: str) -> Iterator[str]:
    """Dotted keys where two plain-data config trees differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            yield from config_differences(a.get(key), b.get(key), f"{prefix}.{key}")
    elif a != b:
        yield prefix


def check_compatible(first: Stored, first_path: Path, other: Stored, other_path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``other`` has the architecture and
    vocabularies of ``first``; the message names both files and the key."""
    pair = f"{first_path} and {other_path}"
    configs = [config_to_dict(first.config), config_to_dict(other.config)]
    for section in CHECKED_SECTIONS:
        diffs = list(config_differences(configs[0][section], configs[1][section], section))
        if diffs:
            raise CheckpointError(f"{pair}: configs differ at {', '.join(diffs)}")
    side = vocab_difference(first, other)
    if side is not None:
        raise CheckpointError(f"{pair}: the {side} vocabularies differ")
    a, b = first.weights, other.weights
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))
        raise CheckpointError(f"{pair}: model tensors differ in name: {', '.join(only)}")
    for key in a:
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            raise CheckpointError(
                f"{pair}: model tensor {key} is {a[key].dtype} {tuple(a[key].shape)} vs "
                f"{b[key].dtype} {tuple(b[key].shape)}"
            )
        if not a[key].is_floating_point() and not torch.equal(a[key], b[key]):
            raise CheckpointError(f"{pair}: integer buffer {key} differs (only floating-point tensors are averaged)")


def average_checkpoints(paths: list[Path]) -> Stored:
    """The average of the checkpoints ``paths``, to write with
    :func:`seq2seq.checkpoint.write_checkpoint`. Inputs are read one at a time, so memory
    holds the running sums and one input, however many files there are."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = read_checkpoint(paths[0])
    sums = {k: v.to(torch.float64) for k, v in first.weights.items() if v.is_floating_point()}
    for path in paths[1:]:
        other = read_checkpoint(path)
        check_compatible(first, paths[0], other, path)
        for key, total in sums.items():
            total += other.weights[key].to(torch.float64)
        del other  # free this input before the next is read
    weights = {
        key: (sums[key] / len(paths)).to(value.dtype) if key in sums else value.clone()
        for key, value in first.weights.items()
    }
    return Stored(first.config, first.src_vocab, first.tgt_vocab, weights, None, first.shortlist)
