"""The input-feeding GRU decoder with additive attention as one fused loop with a hand-written
backward pass (what cuDNN does for a plain RNN, here for the whole attentional decoder).

For each step t, with the inputs of all steps projected beforehand (x_t = W_ie E y_{t-1} + b_ih)::

    r, z, n = GRU gates of (x_t + W_if f_{t-1}, W_hh h_{t-1} + b_hh)    (torch.nn.GRU's equations)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    a_t = softmax_j(v^T tanh(W_q h_t + k_j))          (Bahdanau et al. 2015, Eq. 6; k_j = U h̄_j + b)
                                                      (computed as softmax_j(2 v^T σ(2 W_q h_t + 2 k_j)))
    c_t = Σ_j a_tj h̄_j
    f_t = dropout(tanh(W_cc c_t + W_ch h_t))          (Luong et al. 2015, Eq. 5; input feeding, Sec. 3.3)

which is :class:`~seq2seq.models.attention_decoders.LuongDecoder` with input feeding, a
one-layer ``gru`` and ``mlp`` attention (the reference model of OpenNMT-py and Joey NMT);
:class:`~seq2seq.kernels.decoder.FusedLuongDecoder` runs it through this loop.

Why: autograd runs this loop as a few dozen small operations per step, each followed in the
backward pass by its own weight-gradient product over the N rows of one step, and under CPU
autocast re-casts every weight at every step. Here weights are cast once per batch, a step is
four matrix products forward and four backward, and the weight gradients are one product per
matrix over all N·T rows at the end. Products run in the autocast dtype (bf16 products are
much faster than float32 ones on CPUs with bf16 dot products, ``scripts/bench/matmul_rates.py``);
the state, the gates and the softmax stay in float32.

The attention's tanh over (N, S, A) at every step is the loop's largest elementwise cost,
and torch's CPU tanh is slower than its sigmoid (``scripts/bench/step_loop.py`` times the
loop). So the
loop uses tanh(x) = 2 σ(2x) − 1: with s_tj = σ(2 k_j + 2 W_q h_t), the score is
v^T tanh(·) = 2 v^T s_tj − Σ v, and the softmax ignores the constant Σ v. The caller passes
the keys doubled, keys2 = 2 k (computed once per batch). The gradients of keys2 and of the
query carry the factors 2 v and 4 v (d(2σ(z) − 1)/dz = 2 σ(z)(1 − σ(z)), z = keys2 + 2 q),
applied once after the sums, and v's is Σ_j de_j tanh(·) = 2 Σ_j de_j s_j − Σ_j de_j.

s_t is not kept for the backward pass, which recomputes it from the queries: kept, it would
be T times the size of the keys, written once to fresh memory and read back once, which
costs more than computing it again in one (N, S, A) buffer that stays in cache and serves
every step, forward and backward (``scripts/bench/step_loop.py``).

Each step is a function (:func:`forward_step`, :func:`backward_step`) that the loops call
eagerly or under ``torch.compile`` (:func:`compiled_steps`: ``training.compile``,
``search.compile``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seq2seq.config import COMPILE_MODES
from seq2seq.kernels.casts import elementwise_dtype, product_dtype
from seq2seq.kernels.gru_loop import gru_step, gru_step_backward
from seq2seq.kernels.matmul import linear, linear_add, mm, register_for_compile, sigmoid_backward


class Weights(NamedTuple):
    """The loop's parameters (views of the decoder's modules' parameters)."""

    w_if: Tensor  # (3H, O) GRU input weights for the fed-back f_{t-1}
    w_hh: Tensor  # (3H, H)
    b_hh: Tensor  # (3H,)
    w_qch: Tensor  # (A + O, H): attention query W_q stacked on the combine's W_ch
    v: Tensor  # (A,)
    w_cc: Tensor  # (O, C) the combine's context part


class _Saved(NamedTuple):
    h: Tensor  # (N, T + 1, H) h_0..h_T
    f: Tensor  # (N, T + 1, O) f_0..f_T (f_0: the initial feed)
    gates: Tensor  # (N, T, 4H) r, z, n and W_hn h + b_hn
    q: Tensor  # (T, N, A) the attention queries W_q h_t, in the product dtype
    a: Tensor  # (N, T, S) float
    c: Tensor  # (N, T, C)
    o: Tensor  # (N, T, O) tanh output before dropout


class _Step(NamedTuple):
    """What the backward pass of one step reads from the forward pass (step t of _Saved)."""

    o: Tensor  # (N, O)
    a: Tensor  # (N, S)
    q: Tensor  # (N, A)
    gates: Tensor  # (N, 4H)
    h_prev: Tensor  # (N, H) h_{t-1}


def forward_step(
    xe_t: Tensor,
    h_prev: Tensor,
    f_prev: Tensor,
    keys2: Tensor,
    memory: Tensor,
    blocked: Tensor,
    w: Weights,
    v2: Tensor,
    drop_t: Tensor | None,
    work: Tensor | None,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """One step of the equations above. xe_t: (N, 3H) and the weights, keys2 (N, S, A),
    memory (N, S, C) and v2 = 2 v (A,) in the product dtype; h_prev (N, H) and f_prev (N, O)
    float; blocked: (N, S) True at padding; drop_t: (N, O) or None; work: an (N, S, A)
    scratch tensor like keys2 for σ, or None for a fresh one (compiled, where it fuses away)
    -> h_t, f_t, a_t (N, S), and for the backward pass the gates r, z, n, W_hn h + b_hn
    (N, 4H; with ``save`` only, else None), the query q_t (N, A), c_t (N, C) and o_t (N, O)
    before dropout."""
    dt, fp = w.w_hh.dtype, h_prev.dtype
    att = v2.size(0)
    gi = linear_add(f_prev.to(dt), w.w_if, xe_t).to(fp)
    gh = linear(h_prev.to(dt), w.w_hh, w.b_hh).to(fp)
    h, r, z, n_, h_n = gru_step(gi, gh, h_prev)
    qch = linear(h.to(dt), w.w_qch)  # (N, A + O)
    q, ch = qch[:, :att], qch[:, att:]
    s = torch.add(keys2, q[:, None, :], alpha=2, out=work).sigmoid_()  # (N, S, A)
    e = (s @ v2).to(fp).masked_fill_(blocked, float("-inf"))  # v^T tanh(.) + Σ v
    a = torch.softmax(e, dim=-1)
    c = torch.bmm(a[:, None, :].to(dt), memory).squeeze(1)
    o = torch.tanh(linear_add(c, w.w_cc, ch).to(fp))
    f = o * drop_t if drop_t is not None else o
    gates = torch.cat([r, z, n_, h_n], dim=1) if save else None
    return h, f, a, gates, q, c, o


def backward_step(
    d_f: Tensor,
    dh: Tensor,
    saved: _Step,
    keys2: Tensor,
    memory: Tensor,
    w: Weights,
    v2: Tensor,
    drop_t: Tensor | None,
    work: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The backward of :func:`forward_step`. d_f: (N, O) the gradient of f_t (from the loss
    and from step t + 1); dh: (N, H) that of h_t from step t + 1; saved: step t's tensors;
    work: as in :func:`forward_step` ->
    the gradients of h_{t-1} and f_{t-1}, of gi and gh (N, 3H), of the query and combine
    products (N, A + O), of c_t (N, C), this step's part of keys2's gradient divided by 2 v
    (N, S, A; in ``work`` where given), and Σ_j de_j s_j (A,) for v's gradient."""
    dt, fp = w.w_hh.dtype, dh.dtype
    d_o = d_f * drop_t if drop_t is not None else d_f
    d_pre = d_o * (1 - saved.o * saved.o)  # o = tanh(W_cc c + ch)
    dc = mm(d_pre.to(dt), w.w_cc).to(fp)
    # c = Σ_j a_j m_j; a = softmax(e); e_j = v · u_j; u_j = tanh(k_j + q)
    da = torch.bmm(memory, dc.to(dt)[:, :, None]).squeeze(2).to(fp)
    de = (saved.a * (da - (saved.a * da).sum(dim=1, keepdim=True))).to(dt)
    sig = torch.add(keys2, saved.q[:, None, :], alpha=2, out=work).sigmoid_()
    d_v = (de.reshape(1, -1) @ sig.reshape(-1, sig.size(2))).squeeze(0).to(fp)
    # d/dkeys2_j = de_j 2 v ⊙ s_j (1 - s_j), d/dq twice that summed over j; the factors
    # 2 v and 4 v are applied after the sums.
    du = sigmoid_backward(de[:, :, None], sig, work)
    d_qch = torch.cat([du.sum(dim=1).to(fp) * (2 * v2.to(fp)), d_pre], dim=1)
    dh = dh + mm(d_qch.to(dt), w.w_qch).to(fp)
    d_gi, d_gh, direct = gru_step_backward(dh, saved.gates, saved.h_prev)
    dh_prev = direct + mm(d_gh.to(dt), w.w_hh).to(fp)
    df_prev = mm(d_gi.to(dt), w.w_if).to(fp)
    return dh_prev, df_prev, d_gi, d_gh, d_qch, dc, du, d_v


class Steps(NamedTuple):
    """The step functions the loops call: :func:`forward_step` and :func:`backward_step`,
    eager or compiled (:func:`compiled_steps`)."""

    forward: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]]
    backward: Callable[..., tuple[Tensor, ...]]
    compiled: bool = False  # fresh outputs each call: no scratch tensors, copies taken at once


EAGER = Steps(forward_step, backward_step)


@functools.cache
def compiled_steps(mode: str) -> Steps:
    """The step functions under ``torch.compile(mode=mode, dynamic=True)``: each step's
    elementwise work fused into a few kernels around the products (``scripts/bench/step_loop.py``
    measures the gain); ``reduce-overhead`` also replays each step as a CUDA graph on GPUs.
    The first batches compile, which takes a while; ``dynamic`` keeps batch and source sizes
    symbolic, so later batches reuse the code."""
    if mode not in COMPILE_MODES[1:]:
        raise ValueError(f"compile mode {mode!r}: expected one of {', '.join(COMPILE_MODES[1:])}")
    register_for_compile()
    options: dict[str, Any] = {"dynamic": True, "mode": mode}
    return Steps(torch.compile(forward_step, **options), torch.compile(backward_step, **options), compiled=True)


def mark_step(steps: Steps) -> None:
    """Before each call of compiled steps: tells CUDA-graph trees (``reduce-overhead``) that
    the outputs of earlier calls have been copied out, so their memory may be reused."""
    if steps.compiled:
        torch.compiler.cudagraph_mark_step_begin()


def _loop(
    xe: Tensor,
    h0: Tensor,
    f0: Tensor,
    keys2: Tensor,
    memory: Tensor,
    mask: Tensor,
    w: Weights,
    drop: Tensor | None,
    save: bool,
    steps: Steps,
) -> tuple[Tensor, Tensor, Tensor, _Saved | None]:
    """Forward over all steps; every weight and ``keys2``/``memory`` already in the product dtype."""
    dt = w.w_hh.dtype
    fp = elementwise_dtype(dt)
    n, length, hidden = xe.size(0), xe.size(1), w.w_hh.size(1)
    att, out, ctx = w.v.size(0), w.w_cc.size(0), memory.size(2)
    # Every step's outputs go into these at once: compiled steps (CUDA graphs) may reuse
    # their output memory at the next call.
    h = xe.new_empty(n, length + 1, hidden, dtype=fp)
    f = xe.new_empty(n, length + 1, out, dtype=fp)
    a = xe.new_empty(n, length, memory.size(1), dtype=fp)
    h[:, 0], f[:, 0] = h0, f0
    saved = None
    if save:
        saved = _Saved(
            h,
            f,
            xe.new_empty(n, length, 4 * hidden, dtype=fp),
            keys2.new_empty(length, n, att),
            a,
            xe.new_empty(n, length, ctx, dtype=dt),
            xe.new_empty(n, length, out, dtype=fp),
        )
    blocked = ~mask
    v2 = 2 * w.v
    work = None if steps.compiled else torch.empty_like(keys2)  # (N, S, A), reused by every step
    for t in range(length):
        mark_step(steps)
        drop_t = drop[:, t] if drop is not None else None
        h_t, f_t, a_t, gates, q, c, o = steps.forward(
            xe[:, t], h[:, t], f[:, t], keys2, memory, blocked, w, v2, drop_t, work, save
        )
        h[:, t + 1], f[:, t + 1], a[:, t] = h_t, f_t, a_t
        if saved is not None:
            assert gates is not None
            saved.gates[:, t], saved.q[t], saved.c[:, t], saved.o[:, t] = gates, q, c, o
    return f[:, 1:], h[:, -1], a, saved


def _cast(dtype: torch.dtype, *tensors: Tensor) -> list[Tensor]:
    """The tensors in ``dtype``, contiguous (some weights are slices of wider ones, which
    products of every step would otherwise copy or read with gaps)."""
    return [t.to(dtype).contiguous() for t in tensors]


class _InputFeedingGRU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        xe: Tensor,
        h0: Tensor,
        f0: Tensor,
        keys2: Tensor,
        memory: Tensor,
        mask: Tensor,
        drop: Tensor | None,
        dtype: torch.dtype,
        steps: Steps,
        *params: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        w = Weights(*_cast(dtype, *params))
        xe_, keys2_, memory_ = _cast(dtype, xe, keys2, memory)
        features, h_last, weights, saved = _loop(xe_, h0, f0, keys2_, memory_, mask, w, drop, True, steps)
        assert saved is not None
        ctx.save_for_backward(keys2_, memory_, *(() if drop is None else (drop,)), *w, *saved)
        ctx.has_drop = drop is not None
        ctx.steps = steps
        ctx.dtypes = (xe.dtype, h0.dtype, f0.dtype, keys2.dtype, memory.dtype, [p.dtype for p in params])
        ctx.mark_non_differentiable(weights)
        return features, h_last, weights

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_features: Tensor | None, d_last: Tensor | None, _: Any) -> tuple[Tensor | None, ...]:
        keys2, memory, *rest = ctx.saved_tensors
        drop = rest.pop(0) if ctx.has_drop else None
        w = Weights(*rest[:6])
        s = _Saved(*rest[6:])
        steps: Steps = ctx.steps
        dt, fp = w.w_hh.dtype, elementwise_dtype(w.w_hh.dtype)
        n, length, hidden = s.gates.size(0), s.gates.size(1), s.h.size(2)
        att = w.v.size(0)
        d_feat = d_features.to(fp) if d_features is not None else s.o.new_zeros(s.o.shape)
        dh = d_last.to(fp) if d_last is not None else s.h.new_zeros(n, hidden)
        df = s.f.new_zeros(n, s.f.size(2))  # gradient reaching f_t from step t + 1
        d_keys2 = torch.zeros(keys2.shape, dtype=fp, device=keys2.device)  # Σ_t du_t
        work = None if steps.compiled else torch.empty_like(keys2)  # (N, S, A), reused by every step
        d_v = s.q.new_zeros(att, dtype=fp)  # Σ_t Σ_j de_j s_j
        v2 = 2 * w.v
        d_gi = s.gates.new_empty(n, length, 3 * hidden)
        d_gh = s.gates.new_empty(n, length, 3 * hidden)
        d_qch = s.o.new_empty(n, length, att + w.w_cc.size(0))
        d_c = s.c.new_empty(n, length, s.c.size(2), dtype=fp)
        for t in reversed(range(length)):
            mark_step(steps)
            step = _Step(s.o[:, t], s.a[:, t], s.q[t], s.gates[:, t], s.h[:, t])
            drop_t = drop[:, t] if drop is not None else None
            outs = steps.backward(d_feat[:, t] + df, dh, step, keys2, memory, w, v2, drop_t, work)
            dh, df, d_gi[:, t], d_gh[:, t], d_qch[:, t], d_c[:, t], du, dv = outs
            d_keys2 += du
            d_v += dv
            if steps.compiled:  # the next call may reuse the memory of its outputs (CUDA graphs)
                dh, df = dh.clone(), df.clone()

        def wgrad(grad: Tensor, inputs: Tensor) -> Tensor:
            """Σ over all N·T rows of grad^T inputs: (rows, out), (rows, in) -> (out, in)."""
            return mm(grad.reshape(-1, grad.size(-1)).t().to(dt), inputs.reshape(-1, inputs.size(-1)).to(dt)).to(fp)

        grads = Weights(
            w_if=wgrad(d_gi, s.f[:, :-1]),
            w_hh=wgrad(d_gh, s.h[:, :-1]),
            b_hh=d_gh.sum(dim=(0, 1)),
            w_qch=wgrad(d_qch, s.h[:, 1:]),
            # Σ_j de_j tanh_j = 2 Σ_j de_j s_j - Σ_j de_j, and Σ_j de_j = 0 (a softmax's gradient)
            v=d_v * 2,
            w_cc=wgrad(d_qch[:, :, att:], s.c),
        )
        d_memory = torch.bmm(s.a.transpose(1, 2).to(dt), d_c.to(dt))
        xe_t, h0_t, f0_t, keys2_t, mem_t, param_types = ctx.dtypes
        return (
            d_gi.to(xe_t),
            dh.to(h0_t),
            df.to(f0_t),
            (d_keys2 * v2.to(fp)).to(keys2_t),
            d_memory.to(mem_t),
            None,
            None,
            None,
            None,
            *(g.to(p) for g, p in zip(grads, param_types, strict=True)),
        )


def input_feeding_gru(
    xe: Tensor,
    h0: Tensor,
    f0: Tensor,
    keys2: Tensor,
    memory: Tensor,
    mask: Tensor,
    weights: Weights,
    drop: Tensor | None = None,
    steps: Steps = EAGER,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the decoder over T teacher-forced steps.

    xe: (N, T, 3H) the projected inputs W_ie E y + b_ih; h0: (N, H); f0: (N, O) the initial
    feed; keys2: (N, S, A) twice the attention keys, 2 (U h̄ + b); memory: (N, S, C); mask:
    (N, S) True at real positions; drop: (N, T, O) the dropout mask of f, already scaled by
    1 / (1 - p), or None; steps: :data:`EAGER` or :func:`compiled_steps` ->
    features f (N, T, O), h_T (N, H), attention (N, T, S), in float32 (float64 for float64
    inputs). Under autocast the products run in its dtype."""
    device = xe.device.type
    dtype = product_dtype(device, weights.w_hh.dtype)
    with torch.autocast(device, enabled=False):
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xe, h0, f0, keys2, memory, *weights)):
            out: tuple[Tensor, Tensor, Tensor] = _InputFeedingGRU.apply(
                xe, h0, f0, keys2, memory, mask, drop, dtype, steps, *weights
            )
            return out
        w = Weights(*_cast(dtype, *weights))
        xe_, keys2_, memory_ = _cast(dtype, xe, keys2, memory)
        features, h_last, attention, _ = _loop(xe_, h0, f0, keys2_, memory_, mask, w, drop, False, steps)
        return features, h_last, attention
