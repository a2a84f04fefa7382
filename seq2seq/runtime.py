"""Device, threads, precision and random state: the choices a process makes about the
hardware, the same for training and for inference (translate, evaluate, score)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch

from seq2seq.config import DEVICES
from seq2seq.errors import DeviceError

# The precisions a run may ask for, and the autocast dtype of each (None: no autocast).
# ``auto`` resolves to one of them (resolve_precision).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str, key: str = "device") -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is an error, whose
    message names ``key`` (the config key or flag that asked for it)."""
    if name not in DEVICES:
        raise DeviceError(f"{key}: {name!r} is not one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key}: cuda, but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


# oneDNN runs torch's bf16 matrix products on CPUs, and the float32 ones of the kernels
# (seq2seq.kernels.matmul). Two caches keep state per product shape, 1,024 entries each by
# default: oneDNN's primitives (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and the computation
# parameters of ideep, torch's wrapper around oneDNN (LRU_CACHE_CAPACITY). Batches of
# varying shapes fill them, and their entries, allocated between the transient tensors of
# every update, fragment the heap, so that the peak resident memory of a long run grows
# several-fold; small caches keep it flat at no speed cost, since every step of a batch has
# the same shapes. `scripts/bench/benchmark.py` reports the peak RSS (peak_rss_mib) to check.
ONEDNN_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads; 0 means every core this process may run on. Also
    caps oneDNN's caches (see ONEDNN_CACHES) where the environment does not set them: they
    are read at the first product, so call this first. Returns the number of threads."""
    for name, value in ONEDNN_CACHES.items():
        os.environ.setdefault(name, value)
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on a CUDA device with bf16 support (Ampere and later), else fp32; any
    other choice is returned as it is."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def check_precision(precision: str, device: torch.device, key: str = "precision") -> None:
    """Raise :class:`DeviceError`, naming ``key``, where ``precision`` (resolved, not
    ``auto``) cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise DeviceError(f"{key}: unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(
            f"{key}: fp16 needs a CUDA device (CPUs lack fast fp16 and its loss scaling); use bf16 or fp32 on CPU"
        )


def autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    """A context-manager factory: autocast to bf16/fp16 (weights stay fp32), or nothing."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The random generators' state as plain data (tensors), for a checkpoint."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
