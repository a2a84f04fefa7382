"""Recurrent layers under CPU autocast: :class:`CPUAutocastRecurrent` stands in for
:class:`~seq2seq.models.cells.TorchRecurrent` and :class:`CPUAutocastStack` for
:class:`~seq2seq.models.stack.RecurrentStack`.

Why: torch's CPU recurrent kernels have no fast bf16 path, and small recurrent products in
bf16 are slower than in float32 on CPUs without matrix units (``scripts/bench/benchmark.py``
compares precisions); the recurrence is also where rounding errors compound. So under CPU
autocast a GRU runs as :func:`~seq2seq.kernels.gru_loop.gru_loop` (recurrent products in the
autocast dtype, state and gates in float32), and every other recurrent layer in float32 with
autocast off. Elsewhere (no autocast, or not on a CPU) they run the plain module's forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.kernels.dropout import fast_dropout_mask
from seq2seq.kernels.gru_loop import gru_loop
from seq2seq.kernels.kernel import Kernel
from seq2seq.models.cells import State, TorchRecurrent
from seq2seq.models.stack import RecurrentStack, reverse_padded


def _cpu_autocast(x: Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def _float32_under_cpu_autocast(
    forward: Callable[[Tensor, State | None, Tensor | None], tuple[Tensor, State]],
    x: Tensor,
    state: State | None,
    lengths: Tensor | None,
) -> tuple[Tensor, State]:
    """``forward(x, state, lengths)``; under CPU autocast in float32 with autocast off."""
    if not _cpu_autocast(x):
        return forward(x, state, lengths)
    with torch.autocast("cpu", enabled=False):
        return forward(x.float(), None if state is None else tuple(s.float() for s in state), lengths)


class CPUAutocastRecurrent(Kernel, TorchRecurrent):
    """:class:`~seq2seq.models.cells.TorchRecurrent` that runs a GRU through the loop and
    the other cells in float32 under CPU autocast (see the module docstring)."""

    plain = TorchRecurrent

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if _cpu_autocast(x) and self.rnn.mode == "GRU":
            return self.gru_forward(x, state, lengths)
        return _float32_under_cpu_autocast(super().forward, x, state, lengths)

    def gru_forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        """The GRU stack through :func:`~seq2seq.kernels.gru_loop.gru_loop`, layer by layer:
        the plain forward's equations and interface (any dtype, with or without autocast)."""
        n, length, d = x.size(0), x.size(1), self.num_directions
        lengths = None if lengths is None else lengths.to(x.device)
        valid = torch.ones(n, length, dtype=torch.bool, device=x.device)
        if lengths is not None:
            valid = torch.arange(length, device=x.device)[None, :] < lengths[:, None]
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.rnn.dropout > 0:  # torch.nn.GRU's dropout between layers
                x = x * fast_dropout_mask(tuple(x.shape), self.rnn.dropout, x.dtype, x.device)
            names = [f"l{layer}", f"l{layer}_reverse"][:d]
            w_ih = torch.cat([cast(Tensor, getattr(self.rnn, f"weight_ih_{s}")) for s in names])
            b_ih = torch.cat([cast(Tensor, getattr(self.rnn, f"bias_ih_{s}")) for s in names])
            projected = F.linear(x, w_ih, b_ih).chunk(d, dim=-1)  # the inputs of all steps, one product
            xi = torch.stack([projected[0], *(reverse_padded(p, lengths) for p in projected[1:])])
            w_hh = torch.stack([cast(Tensor, getattr(self.rnn, f"weight_hh_{s}")) for s in names])
            b_hh = torch.stack([cast(Tensor, getattr(self.rnn, f"bias_hh_{s}")) for s in names])
            h0 = x.new_zeros(d, n, self.hidden_size) if state is None else state[0][:, layer * d : (layer + 1) * d]
            out, h = gru_loop(xi, h0.transpose(0, 1) if state is not None else h0, w_hh, b_hh, valid)
            x = torch.cat([out[0], *(reverse_padded(o, lengths) for o in out[1:])], dim=-1)
            finals.append(h.transpose(0, 1))
        return x, (torch.cat(finals, dim=1),)


class CPUAutocastStack(Kernel, RecurrentStack):
    """:class:`~seq2seq.models.stack.RecurrentStack` that runs in float32 with autocast off
    under CPU autocast (see the module docstring)."""

    plain = RecurrentStack

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        return _float32_under_cpu_autocast(super().forward, x, state, lengths)
