"""The output projection with its softmax, fused: :class:`FastSeq2Seq` stands in for
:class:`~seq2seq.models.seq2seq.Seq2Seq` with the same equations, faster.

Training (:meth:`FastSeq2Seq.cross_entropy`): with a vocabulary of thousands of pieces and
a few thousand target positions per batch, the plain ``F.cross_entropy(generator(x), ...)``
materialises several (M, V) tensors (the logits, their float32 copy, the log-probabilities,
the zero-filled gradient, the gradient of the logits), each freshly allocated and
page-faulted at every update; on a small CPU this costs more than the projection's matrix
products (``scripts/bench/benchmark.py`` measures training). Here the projection, the softmax
and the gradient are computed a chunk of rows at a time while the chunk's logits are still
in cache, and the backward pass only scales the gradients the forward pass already computed
(the loss is a scalar, so its gradient is known up to that scale). The result equals
``F.cross_entropy(x @ W^T + b, target, label_smoothing=ε, reduction="sum")`` with the logits
rounded to the autocast dtype, as autocast would, and the softmax in float32.

Search (:meth:`FastSeq2Seq.step`): the output projection's weights (the shortlist's rows
only, where one is given) are picked and cast once per search rather than at every step,
its float32 products go through :mod:`~seq2seq.kernels.matmul`, and the log-probabilities
are float32 for the half types.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from seq2seq.kernels.casts import CastCache, elementwise_dtype, product_dtype
from seq2seq.kernels.kernel import Kernel
from seq2seq.kernels.matmul import linear, mm
from seq2seq.models.cells import State
from seq2seq.models.encoder import Encoded
from seq2seq.models.seq2seq import Seq2Seq, StepOutput


def _chunk_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """logits: (c, V) -> summed loss (), log-probabilities (c, V) float32.

    One fused log-softmax rather than ``logsumexp`` (max, subtract into a new tensor, exp,
    sum) followed by a second exp for the gradient: fewer passes over (c, V), the same two
    (c, V) tensors per chunk."""
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp.gather(1, target[:, None]).sum()
    if label_smoothing == 0:
        return nll, logp
    # The uniform part ε·mean_j(-log p_j), summed over the rows.
    return (1.0 - label_smoothing) * nll - label_smoothing / logp.size(1) * logp.sum(), logp


class _Gradients(NamedTuple):
    x: Tensor  # (M, O) in the products' dtype
    weight: Tensor  # (V, O)
    bias: Tensor  # (V,)


def _chunked(
    x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, label_smoothing: float, chunk: int, grads: bool
) -> tuple[Tensor, _Gradients | None]:
    """The summed loss, a chunk of rows at a time, and with ``grads`` the gradients of the
    loss with respect to x, weight and bias (the bias' also where it is None)."""
    dtype = product_dtype(x.device.type, weight.dtype)
    fp = elementwise_dtype(dtype)
    with torch.autocast(x.device.type, enabled=False):
        w, xc = weight.to(dtype), x.to(dtype)
        b = None if bias is None else bias.to(dtype)
        vocab = weight.size(0)
        total = x.new_zeros((), dtype=fp)
        out = None
        if grads:
            out = _Gradients(
                torch.empty_like(xc), torch.zeros_like(weight, dtype=fp), torch.zeros(vocab, dtype=fp, device=x.device)
            )
        for start in range(0, x.size(0), chunk):
            rows = slice(start, start + chunk)
            xs, ys = xc[rows], target[rows]
            z = linear(xs, w, b).to(fp)
            loss, logp = _chunk_loss(z, ys, label_smoothing)
            total += loss
            if out is None:
                continue
            # d loss / d z = softmax(z) - q, q = (1 - ε)·onehot(y) + ε/V, in place of log p.
            grad_z = logp.exp_()
            if label_smoothing > 0:
                grad_z.sub_(label_smoothing / vocab)
            grad_z[torch.arange(len(ys), device=ys.device), ys] -= 1.0 - label_smoothing
            gz = grad_z.to(dtype)
            out.x[rows] = mm(gz, w)
            out.weight.add_(mm(gz.t(), xs))  # into float32 without a converted copy
            out.bias.add_(grad_z.sum(dim=0))
    return total, out


class _ProjectedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, label_smoothing: float, chunk: int
    ) -> Tensor:
        total, grads = _chunked(x, weight, bias, target, label_smoothing, chunk, grads=True)
        assert grads is not None
        ctx.save_for_backward(*grads)
        ctx.has_bias = bias is not None
        ctx.x_dtype = x.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.saved_tensors
        return (
            (grad_x * grad_loss).to(ctx.x_dtype),
            grad_w * grad_loss,
            grad_b * grad_loss if ctx.has_bias else None,
            None,
            None,
            None,
        )


def projected_cross_entropy(
    x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, label_smoothing: float = 0.0, chunk: int = 512
) -> Tensor:
    """Summed cross-entropy of ``softmax(x W^T + b)`` against ``target``, with label
    smoothing ε (Szegedy et al. 2016: the target distribution is (1 - ε)·onehot + ε/V).

    x: (M, O) features of the real target positions; weight: (V, O); bias: (V,) or None;
    target: (M,) ids -> loss () in float32 (float64 for float64 inputs). ``chunk`` rows are
    projected at a time. Under autocast the products run in its dtype and the softmax in
    float32."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        loss: Tensor = _ProjectedCrossEntropy.apply(x, weight, bias, target, label_smoothing, chunk)
        return loss
    return _chunked(x, weight, bias, target, label_smoothing, chunk, grads=False)[0]


class FastSeq2Seq(Kernel, Seq2Seq):
    """:class:`~seq2seq.models.seq2seq.Seq2Seq` with the fused loss and the cast-once
    output projection of search (see the module docstring)."""

    plain = Seq2Seq
    _cast_cache: CastCache

    def setup(self, compile: str, frozen: bool) -> None:
        self._cast_cache = CastCache(frozen)

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """Starts a search: weights cast for an earlier one are dropped (unless frozen)."""
        self._cast_cache.clear()
        return super().encode(src, src_lengths)

    def cross_entropy(self, features: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        generator = self.generator
        return projected_cross_entropy(features, generator.weight, generator.bias, target, label_smoothing)

    def step(self, prev: Tensor, state: State, encoded: Encoded, vocab: Tensor | None = None) -> StepOutput:
        out = self.decoder.step(prev, state, encoded)
        logits = self.vocab_logits(out.features, vocab)
        log_probs = torch.log_softmax(logits, dim=-1, dtype=elementwise_dtype(logits.dtype))
        return StepOutput(log_probs, out.state, out.attention)

    def vocab_logits(self, features: Tensor, vocab: Tensor | None) -> Tensor:
        if torch.is_grad_enabled():
            return super().vocab_logits(features, vocab)
        weight, bias = self.generator.weight, self.generator.bias
        dtype = product_dtype(features.device.type, weight.dtype)
        if dtype == weight.dtype and vocab is None and not self._cast_cache.frozen:
            return linear(features, weight, bias)
        params = [weight] if bias is None else [weight, bias]
        rows = slice(None) if vocab is None else vocab
        # The cache is cleared at encode, so each search picks its own list's rows once.
        key_params = params if vocab is None else [*params, vocab]
        w, *b = self._cast_cache.get(dtype, key_params, lambda: [p[rows] for p in params], pack=(0,))
        return linear(features.to(dtype), w, b[0] if b else None)
