"""A GRU layer (one or both directions) as one loop with a hand-written backward pass, for
CPU autocast, where torch's fused RNN kernels have no fast bf16 path.

torch.nn.GRU's equations (Cho et al. 2014, with the reset gate applied after the recurrent
product, as cuDNN does)::

    r = σ(x_r + W_hr h + b_hr),  z = σ(x_z + W_hz h + b_hz)
    n = tanh(x_n + r ⊙ (W_hn h + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h

with x = W_i x_t + b_i projected for all steps at once by the caller. Both directions run
in the same loop as one batched product per step (the reverse direction reads each sequence
reversed within its length). Padding as in :mod:`seq2seq.models.stack`: a sequence's state
stops changing after its last position and its outputs are zero beyond it. The recurrent
products run in the autocast dtype, the state and gates in float32, and the recurrent
weights' gradients are one product over all N·L rows after the backward loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seq2seq.kernels.casts import elementwise_dtype, product_dtype
from seq2seq.kernels.matmul import baddbmm, bmm


def gru_step(gi: Tensor, gh: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One step of the equations above on the last dimension. gi = x (.., 3H), gh =
    W_h h + b_h (.., 3H), h (.., H) -> h', and r, z, n, W_hn h + b_hn for the backward pass."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(torch.addcmul(i_n, r, h_n))
    return torch.lerp(n, h, z), r, z, n, h_n  # lerp: (1 - z) n + z h


def gru_step_backward(
    d_new: Tensor, gates: Tensor, h: Tensor, d_gi: Tensor | None = None, d_gh: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward of :func:`gru_step`. d_new: gradient of h' (.., H); gates: r, z, n and
    W_hn h + b_hn concatenated (.., 4H); h: the state before the step -> the gradients of gi
    and gh (.., 3H), written into ``d_gi`` and ``d_gh`` where given, and the part of h's
    gradient that does not pass through W_h (d_new ⊙ z)."""
    r, z, n, h_n = gates.chunk(4, dim=-1)
    d_n = d_new * (1 - z) * (1 - n * n)
    d_z = d_new * (h - n) * z * (1 - z)
    d_r = d_n * h_n * r * (1 - r)
    d_gi = torch.cat([d_r, d_z, d_n], dim=-1, out=d_gi)
    d_gh = torch.cat([d_r, d_z, d_n * r], dim=-1, out=d_gh)
    return d_gi, d_gh, d_new * z


def _forward(
    xi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, valid: Tensor, save: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """xi: (D, N, L, 3H) product dtype; h0: (D, N, H); w_hh: (D, 3H, H); b_hh: (D, 3H);
    valid: (N, L) bool -> outputs (D, N, L, H), final h (D, N, H), and if ``save`` the
    states before each step (D, N, L, H) and the gates r, z, n, W_hn h + b_hn (D, N, L, 4H)."""
    dt, fp = w_hh.dtype, elementwise_dtype(w_hh.dtype)
    d, n, length, hidden = h0.size(0), h0.size(1), xi.size(2), h0.size(2)
    w_t, bias = w_hh.transpose(1, 2), b_hh[:, None, :]
    h = h0.to(fp)
    outputs = xi.new_empty(d, n, length, hidden, dtype=fp)
    prevs = xi.new_empty(d, n, length, hidden, dtype=fp) if save else None
    gates = xi.new_empty(d, n, length, 4 * hidden, dtype=fp) if save else None
    full = int(valid.sum(1).min()) if n else length  # every sequence is real before this step
    for t in range(length):
        gi = xi[:, :, t].to(fp)
        gh = baddbmm(bias, h.to(dt), w_t).to(fp)  # (D, N, 3H)
        new, r, z, n_, h_n = gru_step(gi, gh, h)
        if prevs is not None and gates is not None:
            prevs[:, :, t] = h
            torch.cat([r, z, n_, h_n], dim=2, out=gates[:, :, t])
        if t >= full:
            m = valid[None, :, t, None]
            outputs[:, :, t] = new * m
            h = torch.where(m, new, h)
        else:
            outputs[:, :, t] = new
            h = new
    return outputs, h, prevs, gates


class _GRULoop(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, xi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, valid: Tensor, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        w = w_hh.to(dtype)
        outputs, h, prevs, gates = _forward(xi.to(dtype), h0, w, b_hh.to(dtype), valid, save=True)
        ctx.save_for_backward(w, valid, prevs, gates)
        ctx.dtypes = (xi.dtype, h0.dtype, w_hh.dtype, b_hh.dtype)
        return outputs, h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor | None, d_last: Tensor | None) -> tuple[Tensor | None, ...]:
        w, valid, prevs, gates = ctx.saved_tensors
        dt, fp = w.dtype, elementwise_dtype(w.dtype)
        d, n, length, hidden = prevs.shape
        dh = d_last.to(fp) if d_last is not None else prevs.new_zeros(d, n, hidden)
        d_gi = prevs.new_empty(d, n, length, 3 * hidden)
        d_gh = prevs.new_empty(d, n, length, 3 * hidden)
        for t in reversed(range(length)):
            m = valid[None, :, t, None]
            # h_t = new where valid, else h_{t-1}; outputs = new where valid, else 0.
            d_new = dh if d_out is None else dh + d_out[:, :, t].to(fp)
            d_new = d_new * m
            carry = dh * ~m
            _, _, direct = gru_step_backward(d_new, gates[:, :, t], prevs[:, :, t], d_gi[:, :, t], d_gh[:, :, t])
            dh = carry + direct + bmm(d_gh[:, :, t].to(dt), w).to(fp)
        rows = d_gh.reshape(d, n * length, 3 * hidden)
        d_w = bmm(rows.transpose(1, 2).to(dt), prevs.reshape(d, n * length, hidden).to(dt)).to(fp)
        d_b = rows.sum(dim=1)
        xi_t, h0_t, w_t, b_t = ctx.dtypes
        return d_gi.to(xi_t), dh.to(h0_t), d_w.to(w_t), d_b.to(b_t), None, None


def gru_loop(xi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Run D GRU directions side by side over projected inputs, each already in its own
    reading order. xi: (D, N, L, 3H); h0: (D, N, H); w_hh: (D, 3H, H); b_hh: (D, 3H);
    valid: (N, L) bool, True at real positions -> outputs (D, N, L, H), final state
    (D, N, H), in float32 (float64 for float64 inputs). Under autocast the recurrent products
    run in its dtype."""
    device = xi.device.type
    dtype = product_dtype(device, w_hh.dtype)
    with torch.autocast(device, enabled=False):
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xi, h0, w_hh, b_hh)):
            out: tuple[Tensor, Tensor] = _GRULoop.apply(xi, h0, w_hh, b_hh, valid, dtype)
            return out
        outputs, h, _, _ = _forward(xi.to(dtype), h0, w_hh.to(dtype), b_hh.to(dtype), valid, save=False)
        return outputs, h
