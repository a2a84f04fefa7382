"""Device, threads and precision: the choices a run makes about the hardware."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from seq2seq.errors import DeviceError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("training.device: cuda, but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


# oneDNN runs torch's bf16 matrix products on CPUs, and here the float32 ones
# (seq2seq.models.matmul). Two caches keep state per product shape, 1,024 entries each by
# default: oneDNN's primitives (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and the computation
# parameters of ideep, torch's wrapper around oneDNN (LRU_CACHE_CAPACITY). Batches of
# varying shapes fill them, and their entries, allocated between the transient tensors of
# every update, fragment the heap: bf16 peak RSS 4.4 GB with both at 1,024, 2.3 GB with the
# primitive cache at 16, 1.2 GB with both at 16 (docs/results.md). Every step of a batch has
# the same shapes, so small caches cost no measurable speed.
ONEDNN_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads; 0 means every core this process may run on. Also
    caps oneDNN's caches (see ONEDNN_CACHES) where the environment does not set them: they
    are read at the first product, so call this first."""
    for name, value in ONEDNN_CACHES.items():
        os.environ.setdefault(name, value)
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def check_precision(precision: str, device: torch.device) -> None:
    """Raise where ``precision`` (resolved, not ``auto``) cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(
            "training.precision: fp16 needs a CUDA device (CPUs lack fast fp16 and its loss "
            "scaling); use bf16 or fp32 on CPU"
        )


def autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    """A context-manager factory: autocast to bf16/fp16 (weights stay fp32), or nothing."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
