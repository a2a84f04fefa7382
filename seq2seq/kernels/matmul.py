"""Matrix products of the kernels and of search, float32 ones through oneDNN on CPU.

Why: torch sends float32 products on CPU to MKL's sgemm, which on AMD processors runs its
AVX2 code, while oneDNN (built into torch's CPU wheels) runs AVX-512 where the CPU has it,
which is markedly faster on the models' shapes (``scripts/bench/matmul_rates.py`` compares
the two). Both are IEEE float32 products; only the order of the sums differs.
Half-precision products already go through oneDNN in torch, so they (and float64, and every
other device) keep torch's operators.

Set ``SEQ2SEQ_FP32_MATMUL=torch`` to keep torch's float32 products (``onednn`` is the
default where torch has oneDNN). oneDNN's operator (``torch.ops.mkldnn._linear_pointwise``)
is private to torch: it is used only after :func:`onednn_float32` has checked, at first use,
that it exists and agrees with ``F.linear``; elsewhere torch's public products run. The
functions also fall back to torch where autograd would have to differentiate them: oneDNN's
operator has no backward, so these are for code that writes its own (the loops, the loss)
or runs without gradients (search). Inside ``torch.compile``
(:func:`~seq2seq.kernels.input_feeding.compiled_steps`) the oneDNN products are custom
operators (``seq2seq::onednn_linear``, ``seq2seq::onednn_linear_add``) that inductor calls
as they are.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

_CHOICES = ("onednn", "torch")


def _trial() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Small fixed operands for the capability checks (no random draws: a check must not move
    the RNG that training and its resumption depend on)."""
    x = torch.arange(15, dtype=torch.float32).view(3, 5) / 7
    w = torch.arange(20, dtype=torch.float32).view(4, 5).cos()
    return x, w, torch.arange(4, dtype=torch.float32), torch.arange(12, dtype=torch.float32).view(3, 4).sin()


@functools.cache
def onednn_float32() -> bool:
    """Whether float32 CPU products go through oneDNN: chosen (``SEQ2SEQ_FP32_MATMUL``) and
    its private operator present and agreeing with torch's products; checked once per process."""
    choice = os.environ.get("SEQ2SEQ_FP32_MATMUL", "onednn")
    if choice not in _CHOICES:
        raise ValueError(f"SEQ2SEQ_FP32_MATMUL={choice!r}: expected one of {', '.join(_CHOICES)}")
    if choice != "onednn":
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    x, w, b, other = _trial()
    try:
        works = torch.allclose(_linear_onednn(x, w, b), F.linear(x, w, b), atol=1e-5) and torch.allclose(
            _linear_add_onednn(x, w, other), torch.addmm(other, x, w.t()), atol=1e-5
        )
    except (RuntimeError, TypeError, AttributeError) as error:
        log.warning("oneDNN float32 products unusable (%s); using torch's", error)
        return False
    if not works:
        log.warning("oneDNN float32 products disagree with torch's; using torch's")
    return works


@functools.cache
def _sigmoid_backward_into() -> bool:
    """Whether torch's private ``aten.sigmoid_backward.grad_input`` is usable; checked once
    per process."""
    return sigmoid_backward_works(getattr(torch.ops.aten.sigmoid_backward, "grad_input", None))


def sigmoid_backward_works(op: Callable[..., Tensor] | None) -> bool:
    """Whether ``op(grad, s, grad_input=out)`` exists and agrees with the public expression."""
    if op is None:
        return False
    grad = _trial()[0]
    s = grad.sigmoid()
    try:
        out = op(grad, s, grad_input=torch.empty_like(s))
    except (RuntimeError, TypeError) as error:
        log.warning("aten.sigmoid_backward.grad_input unusable (%s); using public operations", error)
        return False
    return bool(torch.allclose(out, grad * s * (1 - s)))


def sigmoid_backward(grad: Tensor, s: Tensor, out: Tensor | None = None) -> Tensor:
    """grad ⊙ s ⊙ (1 - s), the gradient through σ given its output s; written into ``out``
    where given (a scratch tensor reused at every step), in one pass where torch allows."""
    if out is not None and _sigmoid_backward_into():
        return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out)
    return grad * s * (1 - s)


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


# The row count oneDNN's packed layout is chosen for. Products of any row count run on it: one
# layout serves one sentence's beam and a full batch alike (``scripts/bench/matmul_rates.py
# --packed`` times both against plain weights).
_PACK_ROWS = 64


def pack(weight: Tensor) -> Tensor:
    """``weight`` (out, in) in oneDNN's blocked layout, for :func:`linear` and :func:`linear_add`
    without gradients, where the products may use it; else ``weight`` itself.

    Why: oneDNN reorders a plain weight into its blocked layout at every call, which for the
    few rows of one sentence's beam costs more than the product (``scripts/bench/matmul_rates.py
    --packed``).
    A packed weight is reordered once, so it pays off only where the same weights serve many
    products: a frozen model's search (:class:`~seq2seq.kernels.casts.CastCache`)."""
    if weight.device.type != "cpu" or not bool(torch.backends.mkldnn.enabled) or not _packable(weight.dtype):
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), _PACK_ROWS)


def is_packed(weight: Tensor) -> bool:
    return weight.layout == torch._mkldnn  # type: ignore[attr-defined]


@functools.cache
def _packable(dtype: torch.dtype) -> bool:
    """Whether weights of ``dtype`` pack: float32 where its products go through oneDNN
    (:func:`onednn_float32`), bfloat16 where oneDNN has it; checked once per dtype and process,
    against torch's own product."""
    if dtype == torch.float32:
        if not onednn_float32():
            return False
    elif dtype != torch.bfloat16 or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    x, w, b, other = (t.to(dtype) for t in _trial())
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, _PACK_ROWS)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
        added = torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, None, "add")
    except (RuntimeError, TypeError, AttributeError) as error:
        log.info("oneDNN packed %s weights unusable (%s); using plain ones", dtype, error)
        return False
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    return torch.allclose(out.float(), F.linear(x, w, b).float(), atol=tol) and torch.allclose(
        added.float(), torch.addmm(other, x, w.t()).float(), atol=tol
    )


def _dense(weight: Tensor) -> Tensor:
    """``weight`` itself if it is contiguous or a transposed contiguous matrix, else a copy: oneDNN
    falls back to a far slower reference kernel on matrices with gaps between rows (slices of a
    wider weight, as the fused decoder's)."""
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
    :func:`~seq2seq.kernels.input_feeding.compiled_steps` before it compiles, not at import,
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
    """``F.linear``: x (.., in), weight (out, in) plain or :func:`pack`-ed (then x and bias in
    its dtype), bias (out,) or None -> (.., out)."""
    if is_packed(weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    if _onednn(x, weight) and (bias is None or bias.dtype == torch.float32):
        if torch.compiler.is_compiling():
            return torch.ops.seq2seq.onednn_linear(x, weight, bias)
        return _linear_onednn(x, weight, bias)
    return F.linear(x, weight, bias)


def linear_add(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    """x W^T + other: x (N, in), weight (out, in) plain or :func:`pack`-ed (then x and other
    in its dtype), other (N, out), any strides -> (N, out)."""
    if is_packed(weight):
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, None, "add")
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
