"""Matrix products of the hand-written loops and of search, float32 ones through oneDNN on CPU.

Why: torch sends float32 products on CPU to MKL's sgemm, which on AMD processors runs its
AVX2 code, while oneDNN (built into torch's CPU wheels) runs AVX-512 where the CPU has it:
on this project's AMD EPYC (Zen 5) the decoder's and the loss's float32 products ran
2.1–2.3× faster through oneDNN, and products with a transposed left operand (the weight
gradients) about 1.6× (``scripts/matmul_rates.py``, docs/results.md). Both are IEEE float32 products; only the order
of the sums differs. Half-precision products already go through oneDNN in torch, so they
(and float64, and every other device) keep torch's operators.

Set ``SEQ2SEQ_FP32_MATMUL=torch`` to keep torch's float32 products (``onednn`` is the
default where torch has oneDNN). The functions fall back to torch where autograd would have
to differentiate them: oneDNN's operator has no backward, so these are for code that writes
its own (the loops, the loss) or runs without gradients (search). Inside ``torch.compile``
(:func:`~seq2seq.models.input_feeding.compiled_steps`) the oneDNN products are custom
operators (``seq2seq::onednn_linear``, ``seq2seq::onednn_linear_add``) that inductor calls
as they are.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor

_CHOICES = ("onednn", "torch")


@functools.cache
def onednn_float32() -> bool:
    """Whether float32 CPU products go through oneDNN (read once per process)."""
    choice = os.environ.get("SEQ2SEQ_FP32_MATMUL", "onednn")
    if choice not in _CHOICES:
        raise ValueError(f"SEQ2SEQ_FP32_MATMUL={choice!r}: expected one of {', '.join(_CHOICES)}")
    available = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    return choice == "onednn" and available


def _onednn_chosen() -> bool:
    return onednn_float32()


def _onednn(x: Tensor, weight: Tensor) -> bool:
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and bool(torch.backends.mkldnn.enabled)
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and _onednn_chosen()
    )


def _dense(weight: Tensor) -> Tensor:
    """``weight`` itself if it is contiguous or a transposed contiguous matrix, else a copy: oneDNN
    runs a reference kernel, hundreds of times slower, on matrices with gaps between rows
    (slices of a wider weight)."""
    return weight if weight.is_contiguous() or weight.t().is_contiguous() else weight.contiguous()


def _linear_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, _dense(weight), bias, "none", [], "")


def _linear_add_onednn(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, _dense(weight), None, "add")


def _linear_fake(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty((*x.shape[:-1], weight.size(0)))


def _linear_add_fake(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    return x.new_empty((x.size(0), weight.size(0)))


@functools.cache
def register_for_compile() -> None:
    """Make the oneDNN products usable inside ``torch.compile`` (called by
    :func:`~seq2seq.models.input_feeding.compiled_steps` before it compiles, not at import,
    since it imports torch._dynamo: a second of start-up): as custom operators
    ``seq2seq::onednn_linear`` and ``seq2seq::onednn_linear_add``, which inductor calls as they
    are (it lowers oneDNN's own operator only for weights frozen into the graph, and its own
    float32 products go to MKL), with the SEQ2SEQ_FP32_MATMUL choice read while tracing."""
    torch.compiler.assume_constant_result(_onednn_chosen)  # marks the function itself
    torch.library.custom_op("seq2seq::onednn_linear", _linear_onednn, mutates_args=()).register_fake(_linear_fake)
    torch.library.custom_op("seq2seq::onednn_linear_add", _linear_add_onednn, mutates_args=()).register_fake(
        _linear_add_fake
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear``: x (.., in), weight (out, in), bias (out,) or None -> (.., out)."""
    if _onednn(x, weight) and (bias is None or bias.dtype == torch.float32):
        if torch.compiler.is_compiling():
            return torch.ops.seq2seq.onednn_linear(x, weight, bias)
        return _linear_onednn(x, weight, bias)
    return F.linear(x, weight, bias)


def linear_add(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    """x W^T + other: x (N, in), weight (out, in), other (N, out), any strides -> (N, out)."""
    if _onednn(x, weight) and other.dtype == torch.float32:
        if torch.compiler.is_compiling():
            return torch.ops.seq2seq.onednn_linear_add(x, weight, other)
        return _linear_add_onednn(x, weight, other)
    return torch.addmm(other, x, weight.t())


def mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b: a (M, K), b (K, N) -> (M, N). Fastest with ``a``'s rows contiguous."""
    return linear(a, b.t())


def baddbmm(bias: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """bias + a @ b over a small leading batch (the directions of a layer): bias (D, 1, N) or
    (D, M, N), a (D, M, K), b (D, K, N) -> (D, M, N)."""
    if _onednn(a, b) and bias.dtype == torch.float32:
        return torch.stack([linear_add(a[i], b[i].t(), bias[i].expand(a.size(1), -1)) for i in range(a.size(0))])
    return torch.baddbmm(bias, a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b over a small leading batch: a (D, M, K), b (D, K, N) -> (D, M, N)."""
    if _onednn(a, b):
        return torch.stack([mm(a[i], b[i]) for i in range(a.size(0))])
    return torch.bmm(a, b)
