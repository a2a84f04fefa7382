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
one-layer ``gru`` and ``mlp`` attention (the reference model of OpenNMT-py and Joey NMT).

Why: autograd runs this loop as a few dozen small operations per step, each followed in the
backward pass by its own weight-gradient product over the N rows of one step, and under CPU
autocast re-casts every weight at every step. Here weights are cast once per batch, a step is
four matrix products forward and four backward, and the weight gradients are one product per
matrix over all N·T rows at the end. Products run in the autocast dtype (bf16: several times
faster than float32 on CPUs with bf16 dot products, docs/results.md); the state, the gates and
the softmax stay in float32.

The attention's tanh over (N, S, A) at every step is the loop's largest elementwise cost,
and torch's CPU tanh is several times slower than its sigmoid (docs/results.md). So the
loop uses tanh(x) = 2 σ(2x) − 1: with s_tj = σ(2 k_j + 2 W_q h_t), the score is
v^T tanh(·) = 2 v^T s_tj − Σ v, and the softmax ignores the constant Σ v. The caller passes
the keys doubled, keys2 = 2 k (computed once per batch). The gradients of keys2 and of the
query carry the factors 2 v and 4 v (d(2σ(z) − 1)/dz = 2 σ(z)(1 − σ(z)), z = keys2 + 2 q),
applied once after the sums, and v's is Σ_j de_j tanh(·) = 2 Σ_j de_j s_j − Σ_j de_j.

s_t is not kept for the backward pass, which recomputes it from the queries: kept, it would
be T times the size of the keys (300 MB in float32 for a batch of the reference model),
written once to fresh memory and read back once, which costs more than computing it again
in one (N, S, A) buffer that stays in cache and serves every step, forward and backward
(docs/results.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seq2seq.models.gru_loop import gru_step, gru_step_backward
from seq2seq.models.matmul import linear, linear_add, mm
from seq2seq.models.precision import elementwise_dtype, product_dtype


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
) -> tuple[Tensor, Tensor, Tensor, _Saved | None]:
    """Forward over all steps; every weight and ``keys2``/``memory`` already in the product dtype."""
    dt = w.w_hh.dtype
    fp = elementwise_dtype(dt)
    n, steps, hidden = xe.size(0), xe.size(1), w.w_hh.size(1)
    att, out = w.v.size(0), w.w_cc.size(0)
    hs = [h0.to(fp)]
    fs = [f0.to(fp)]
    attn, ctxs, os_ = [], [], []
    gates = xe.new_empty(n, steps, 4 * hidden, dtype=fp) if save else None  # r, z, n, W_hn h + b_hn
    blocked = ~mask
    v2 = 2 * w.v
    work = torch.empty_like(keys2)  # (N, S, A) σ(keys2 + 2 q_t) of the current step
    qs = keys2.new_empty(steps, n, att) if save else None
    for t in range(steps):
        h_prev, f_prev = hs[-1], fs[-1]
        gi = linear_add(f_prev.to(dt), w.w_if, xe[:, t]).to(fp)
        gh = linear(h_prev.to(dt), w.w_hh, w.b_hh).to(fp)
        h, r, z, n_, h_n = gru_step(gi, gh, h_prev)
        qch = linear(h.to(dt), w.w_qch)  # (N, A + O)
        q, ch = qch[:, :att], qch[:, att:]
        if qs is not None:
            qs[t] = q
        s = torch.add(keys2, q[:, None, :], alpha=2, out=work).sigmoid_()  # (N, S, A)
        e = (s @ v2).to(fp).masked_fill_(blocked, float("-inf"))  # v^T tanh(.) + Σ v
        a = torch.softmax(e, dim=-1)  # (N, S)
        c = torch.bmm(a[:, None, :].to(dt), memory).squeeze(1)  # (N, C)
        o = torch.tanh(linear_add(c, w.w_cc, ch).to(fp))
        f = o * drop[:, t] if drop is not None else o
        hs.append(h)
        fs.append(f)
        attn.append(a)
        if gates is not None:
            torch.cat([r, z, n_, h_n], dim=1, out=gates[:, t])
            ctxs.append(c)
            os_.append(o)
    features = torch.stack(fs[1:], dim=1) if steps else f0.new_zeros(n, 0, out, dtype=fp)
    weights = torch.stack(attn, dim=1) if steps else memory.new_zeros(n, 0, memory.size(1), dtype=fp)
    saved = None
    if save:
        assert qs is not None and gates is not None
        saved = _Saved(
            torch.stack(hs, dim=1),
            torch.stack(fs, dim=1),
            gates,
            qs,
            weights,
            torch.stack(ctxs, dim=1),
            torch.stack(os_, dim=1),
        )
    assert hs[-1].shape == (n, hidden)
    return features, hs[-1], weights, saved


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
        *params: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        w = Weights(*_cast(dtype, *params))
        xe_, keys2_, memory_ = _cast(dtype, xe, keys2, memory)
        features, h_last, weights, saved = _loop(xe_, h0, f0, keys2_, memory_, mask, w, drop, save=True)
        assert saved is not None
        ctx.save_for_backward(keys2_, memory_, *(() if drop is None else (drop,)), *w, *saved)
        ctx.has_drop = drop is not None
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
        dt, fp = w.w_hh.dtype, elementwise_dtype(w.w_hh.dtype)
        n, steps, hidden = s.gates.size(0), s.gates.size(1), s.h.size(2)
        att = w.v.size(0)
        d_feat = d_features.to(fp) if d_features is not None else s.o.new_zeros(s.o.shape)
        dh = d_last.to(fp) if d_last is not None else s.h.new_zeros(n, hidden)
        df = s.f.new_zeros(n, s.f.size(2))  # gradient reaching f_t from step t + 1
        d_keys2 = torch.zeros(keys2.shape, dtype=fp, device=keys2.device)
        work = torch.empty_like(keys2)  # (N, S, A) σ(keys2 + 2 q_t), then its gradient
        d_v = s.q.new_zeros(att, dtype=fp)  # Σ_t Σ_j de_j s_j
        d_e_sum = s.q.new_zeros((), dtype=fp)
        v2 = 2 * w.v.to(fp)  # d(2σ(z) - 1)/dz = 2 σ(z)(1 - σ(z)), z = keys2 + 2 q
        v4 = 2 * v2  # the query enters z twice
        d_gi = s.gates.new_empty(n, steps, 3 * hidden)
        d_gh = s.gates.new_empty(n, steps, 3 * hidden)
        d_qch = s.o.new_empty(n, steps, att + w.w_cc.size(0))
        d_c = s.c.new_empty(n, steps, s.c.size(2), dtype=fp)
        for t in reversed(range(steps)):
            # f_t = o_t ⊙ mask_t, o_t = tanh(W_cc c_t + ch_t)
            d_f = d_feat[:, t] + df
            d_o = d_f * drop[:, t] if drop is not None else d_f
            o = s.o[:, t]
            d_pre = d_o * (1 - o * o)
            dc = mm(d_pre.to(dt), w.w_cc).to(fp)
            # c = Σ_j a_j m_j; a = softmax(e); e_j = v · u_j; u_j = tanh(k_j + q)
            a = s.a[:, t]
            da = torch.bmm(memory, dc.to(dt)[:, :, None]).squeeze(2).to(fp)
            de = a * (da - (a * da).sum(dim=1, keepdim=True))
            de_ = de.to(dt)
            sig = torch.add(keys2, s.q[t][:, None, :], alpha=2, out=work).sigmoid_()
            d_v += (de_.reshape(1, -1) @ sig.reshape(-1, att)).squeeze(0).to(fp)
            d_e_sum += de.sum()
            # d/dkeys2_j = de_j 2 v ⊙ s_j (1 - s_j), d/dq twice that summed over j; the
            # factors 2 v and 4 v are applied after the sums.
            du = torch.ops.aten.sigmoid_backward.grad_input(de_[:, :, None], sig, grad_input=work)  # (N, S, A)
            d_keys2 += du
            d_q = du.sum(dim=1).to(fp) * v4
            d_qch[:, t, :att] = d_q
            d_qch[:, t, att:] = d_pre
            d_c[:, t] = dc
            dh = dh + mm(d_qch[:, t].to(dt), w.w_qch).to(fp)
            direct = gru_step_backward(dh, s.gates[:, t], s.h[:, t], d_gi[:, t], d_gh[:, t])
            dh = direct + mm(d_gh[:, t].to(dt), w.w_hh).to(fp)
            df = mm(d_gi[:, t].to(dt), w.w_if).to(fp)

        def wgrad(grad: Tensor, inputs: Tensor) -> Tensor:
            """Σ over all N·T rows of grad^T inputs: (rows, out), (rows, in) -> (out, in)."""
            return mm(grad.reshape(-1, grad.size(-1)).t().to(dt), inputs.reshape(-1, inputs.size(-1)).to(dt)).to(fp)

        grads = Weights(
            w_if=wgrad(d_gi, s.f[:, :-1]),
            w_hh=wgrad(d_gh, s.h[:, :-1]),
            b_hh=d_gh.sum(dim=(0, 1)),
            w_qch=wgrad(d_qch, s.h[:, 1:]),
            # Σ de_j tanh_j = 2 Σ de_j s_j - Σ de_j (the last sum is 0 up to rounding)
            v=d_v * 2 - d_e_sum,
            w_cc=wgrad(d_qch[:, :, att:], s.c),
        )
        d_memory = torch.bmm(s.a.transpose(1, 2).to(dt), d_c.to(dt))
        xe_t, h0_t, f0_t, keys2_t, mem_t, param_types = ctx.dtypes
        return (
            d_gi.to(xe_t),
            dh.to(h0_t),
            df.to(f0_t),
            (d_keys2 * v2).to(keys2_t),
            d_memory.to(mem_t),
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
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the decoder over T teacher-forced steps.

    xe: (N, T, 3H) the projected inputs W_ie E y + b_ih; h0: (N, H); f0: (N, O) the initial
    feed; keys2: (N, S, A) twice the attention keys, 2 (U h̄ + b); memory: (N, S, C); mask:
    (N, S) True at real positions; drop: (N, T, O) the dropout mask of f, already scaled by
    1 / (1 - p), or None ->
    features f (N, T, O), h_T (N, H), attention (N, T, S), in float32 (float64 for float64
    inputs). Under autocast the products run in its dtype."""
    device = xe.device.type
    dtype = product_dtype(device, weights.w_hh.dtype)
    with torch.autocast(device, enabled=False):
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xe, h0, f0, keys2, memory, *weights)):
            out: tuple[Tensor, Tensor, Tensor] = _InputFeedingGRU.apply(
                xe, h0, f0, keys2, memory, mask, drop, dtype, *weights
            )
            return out
        w = Weights(*_cast(dtype, *weights))
        xe_, keys2_, memory_ = _cast(dtype, xe, keys2, memory)
        features, h_last, attention, _ = _loop(xe_, h0, f0, keys2_, memory_, mask, w, drop, save=False)
        return features, h_last, attention
