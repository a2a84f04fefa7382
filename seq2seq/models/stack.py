"""Recurrent layers built from one-step cells, and stacks of any recurrent layers.

:class:`LoopLayer` runs a :class:`~seq2seq.models.custom_cells.RecurrentCell` over time
(both directions if bidirectional); :class:`RecurrentStack` stacks layers with dropout
(plain, or variational: one mask per sequence) and optional residual connections. Both
have the interface of :mod:`seq2seq.models.cells`: ``output, state = layer(x, state, lengths)``.

Speed: the input projections of all steps are one matrix product (``cell.project``), so
the loop over time does one small recurrent product and a few pointwise ops per step.
Padding: a sequence's state stops changing after its last position (so its final state
is the state there) and its outputs are zero beyond it; the reverse direction starts at
each sequence's own last position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.custom_cells import RecurrentCell, State
from seq2seq.models.dropout import dropout_mask


class Recurrent(nn.Module):
    """The attributes every recurrent layer of :mod:`seq2seq.models.cells` has."""

    hidden_size: int
    num_layers: int
    num_directions: int
    num_states: int
    state_sizes: tuple[int, ...]  # per state tensor; state_sizes[0] is the output's per direction
    output_size: int  # num_directions * state_sizes[0]


class LoopLayer(Recurrent):
    """One recurrent layer: a cell per direction, run step by step.

    x: (N, L, I), state: each (N, D, S_k) or None (zeros), lengths: (N,) or None ->
    output (N, L, D·S_0), zero at padding, and the final state, each (N, D, S_k).

    ``recurrent_dropout`` > 0 multiplies h by one dropout mask per sequence before every
    recurrent product while training (Gal & Ghahramani 2016, Sec. 4); the mask is drawn per
    call, so a caller that runs the layer one step at a time gets a fresh mask each step.
    """

    def __init__(self, cell: Callable[[], RecurrentCell], bidirectional: bool = False, recurrent_dropout: float = 0.0):
        super().__init__()
        self.cells = nn.ModuleList(cell() for _ in range(2 if bidirectional else 1))
        self.recurrent_dropout = recurrent_dropout
        first: RecurrentCell = self.cells[0]  # type: ignore[assignment]
        self.state_sizes, self.hidden_size = first.state_sizes, first.hidden_size
        self.num_layers, self.num_states, self.num_directions = 1, len(first.state_sizes), len(self.cells)
        self.output_size = self.num_directions * first.state_sizes[0]

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        n, length = x.size(0), x.size(1)
        valid = None  # (N, L, 1) bool, True at real positions
        if lengths is not None:
            lengths = lengths.to(x.device)
            valid = (torch.arange(length, device=x.device)[None, :] < lengths[:, None])[..., None]
        outputs, finals = [], []
        for d, cell in enumerate(self.cells):
            assert isinstance(cell, RecurrentCell)
            start = (
                tuple(x.new_zeros(n, size) for size in cell.state_sizes)
                if state is None
                else tuple(s[:, d] for s in state)
            )
            xs = x if d == 0 else reverse_padded(x, lengths)
            out, final = self._scan(cell, cell.project(xs), start, valid, lengths)
            outputs.append(out if d == 0 else reverse_padded(out, lengths))
            finals.append(final)
        output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        return output, tuple(torch.stack(parts, dim=1) for parts in zip(*finals))

    def _scan(
        self, cell: RecurrentCell, xp: Tensor, state: State, valid: Tensor | None, lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """Run ``cell`` over the projected inputs xp (N, L, G·H) from ``state``."""
        h_mask = None
        if self.training and self.recurrent_dropout > 0:
            h_mask = dropout_mask(tuple(state[0].shape), self.recurrent_dropout, state[0])
        # Every sequence is real up to its shortest length: no masking needed before it.
        masked_from = xp.size(1) if lengths is None else int(lengths.min())
        outputs = []
        for t, xt in enumerate(xp.unbind(1)):
            h = state[0] if h_mask is None else state[0] * h_mask
            new = cell.step(xt, state, h)
            if valid is not None and t >= masked_from:
                new = tuple(torch.where(valid[:, t], a, b) for a, b in zip(new, state))
            outputs.append(new[0])
            state = new
        out = torch.stack(outputs, dim=1)
        if valid is not None and masked_from < xp.size(1):
            out = out * valid
        return out, state


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (N, L, F) within its length; padding stays in place."""
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.size(1), device=x.device)[None, :]
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, index[..., None].expand_as(x))


class RecurrentStack(Recurrent):
    """Layers of the :mod:`~seq2seq.models.cells` interface stacked, each feeding the next.

    Between layers: dropout, ``plain`` (a new mask per position) or ``variational`` (one
    mask per sequence, Gal & Ghahramani 2016, Sec. 4). With ``residual``, every layer above
    the first adds its input to its output (Wu et al. 2016, Sec. 3.1; He et al. 2016).
    The first layer's input is the caller's to drop, as for torch's RNN modules.

    State: each (N, num_layers·D, S_k), layer-major (row l·D + d) as in torch.
    """

    def __init__(
        self, layers: Sequence[Recurrent], dropout: float = 0.0, residual: bool = False, variational: bool = False
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout, self.residual, self.variational = dropout, residual, variational
        first = layers[0]
        self.num_layers = len(layers)
        self.num_directions, self.num_states = first.num_directions, first.num_states
        self.state_sizes, self.hidden_size, self.output_size = first.state_sizes, first.hidden_size, first.output_size

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """x: (N, L, I) -> output (N, L, D·S_0), state (each (N, num_layers·D, S_k))."""
        d = self.num_directions
        finals = []
        for i, layer in enumerate(self.layers):
            inputs = x if i == 0 else self._drop(x)
            layer_state = None if state is None else tuple(s[:, i * d : (i + 1) * d] for s in state)
            out, final = layer(inputs, layer_state, lengths)
            x = out + x if self.residual and i > 0 else out
            finals.append(final)
        return x, tuple(torch.cat(parts, dim=1) for parts in zip(*finals))

    def _drop(self, x: Tensor) -> Tensor:
        if not self.training or self.dropout == 0:
            return x
        if not self.variational:
            return F.dropout(x, self.dropout, training=True)
        return x * dropout_mask((x.size(0), 1, x.size(2)), self.dropout, x)
