"""Fast paths beside the plain model of :mod:`seq2seq.models`, and the one place that
chooses them: :func:`accelerate`.

Each kernel is a subclass of the plain module it speeds up, with the same parameters and
the same equations, parity-tested against it in float64 (tests/test_kernels.py):

=============================  ==========================================  ============================
kernel                         stands in for                               where it applies
=============================  ==========================================  ============================
:class:`FusedLuongDecoder`     ``models.attention_decoders.LuongDecoder``  :func:`config.fused_decoder`
:class:`CPUAutocastRecurrent`  ``models.cells.TorchRecurrent``             under CPU autocast
:class:`CPUAutocastStack`      ``models.stack.RecurrentStack``             under CPU autocast
:class:`FastDropout`           ``torch.nn.Dropout``                        in training
:class:`FastSeq2Seq`           ``models.seq2seq.Seq2Seq``                  loss, and search steps
=============================  ==========================================  ============================

A kernel (:class:`~seq2seq.kernels.kernel.Kernel`) names the plain class it stands in for,
and its ``supports(module)`` says which modules of that class it takes; its forward hands
any input it does not speed up (no autocast, say) to the plain module's forward.
:func:`accelerate` changes the class of each supported module in place, the way
``torch.nn.utils.parametrize`` does, so that parameter names, state dicts and checkpoints
stay those of the plain model. ``training.kernels: false`` (``search.kernels``) skips it, and
the plain model runs alone.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

from seq2seq.config import COMPILE_MODES
from seq2seq.kernels.decoder import FusedLuongDecoder
from seq2seq.kernels.dropout import FastDropout
from seq2seq.kernels.kernel import Kernel
from seq2seq.kernels.loss import FastSeq2Seq
from seq2seq.kernels.recurrent import CPUAutocastRecurrent, CPUAutocastStack

__all__ = ["KERNELS", "accelerate", "kernel_of"]


# Tried in order for every module of the model; the first that supports a module takes it.
KERNELS: tuple[type[Kernel], ...] = (
    FusedLuongDecoder,
    CPUAutocastRecurrent,
    CPUAutocastStack,
    FastDropout,
    FastSeq2Seq,
)


def kernel_of(module: nn.Module) -> type[Kernel] | None:
    """The kernel class that :func:`accelerate` gives ``module``, or None for the plain path."""
    return next((kernel for kernel in KERNELS if kernel.supports(module)), None)


M = TypeVar("M", bound=nn.Module)


def accelerate(model: M, compile: str = "none", frozen: bool = False) -> M:
    """Give every module of ``model`` (a :class:`~seq2seq.models.seq2seq.Seq2Seq` or any of
    its parts) that a kernel supports that kernel, in place, and return the model.

    ``compile`` (:data:`~seq2seq.config.COMPILE_MODES`): run the fused decoder's step loop
    under ``torch.compile``; only that decoder has one (ValueError elsewhere). Call
    :func:`accelerate` again to change it.

    ``frozen``: the weights will not change from here on (a model loaded to translate, not to
    train): weights cast or packed for search are made once and kept across searches, and
    oneDNN's weight matrices are packed in its blocked layout
    (:func:`~seq2seq.kernels.matmul.pack`). Training must not use a frozen model."""
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile mode {compile!r}: expected one of {', '.join(COMPILE_MODES)}")
    compiled = False
    for module in model.modules():
        kernel = kernel_of(module)
        if kernel is None:
            continue
        module.__class__ = kernel  # type: ignore[assignment]  # a Kernel is also a subclass of the plain class
        kernel.setup(module, compile, frozen)  # type: ignore[arg-type]
        compiled |= kernel is FusedLuongDecoder
    if compile != "none" and not compiled:
        raise ValueError(f"compile {compile!r}: the model has no fused decoder, whose step loop alone compiles")
    return model
