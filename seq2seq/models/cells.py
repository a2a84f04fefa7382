"""Recurrent layers behind one interface, chosen by name.

Every recurrent layer here is a stack (``num_layers``, optionally ``bidirectional``) with
torch.nn's argument names and ``batch_first=True``, and one calling convention::

    output, state = layer(x, state=None, lengths=None)

- ``x``: (N, L, H_in); ``lengths``: (N,) real lengths on the CPU, or None for full length.
- ``output``: (N, L, output_size), output_size = D * state_sizes[0], zero at padding.
- ``state``: a tuple of ``num_states`` tensors, the k-th (N, num_layers * D, state_sizes[k]),
  **batch first** so that search can reorder any state with ``index_select(0, ...)``; one
  tensor (h) for ``rnn`` and ``gru``, two (h, c) for the LSTMs. Layer-major order as in
  torch: index ``l * D + d``. Every state has ``hidden_size`` units except a projected
  LSTM's h (``proj_size``).

Attributes every layer has: ``hidden_size``, ``num_layers``, ``num_states``,
``state_sizes``, ``output_size``.

Cells (:data:`CELLS`): ``rnn`` (Elman: h' = tanh(W x + U h + b)); ``gru`` (Cho et al. 2014
in torch's form, :class:`~seq2seq.models.custom_cells.GRUCell`); ``lstm`` (forget gate of
Gers et al. 2000, bias 1 by default); ``lstm_peephole`` (Gers et al. 2003); ``lstmp``
(Sak et al. 2014, ``proj_size``); ``layernorm_gru`` and ``layernorm_lstm`` (Ba et al. 2016).
The equations are in :mod:`seq2seq.models.custom_cells`.

``rnn``, ``gru``, ``lstm`` and ``lstmp`` run torch's own recurrent modules (cuDNN on GPU),
:class:`TorchRecurrent`, unless variational dropout asks for a mask on the recurrent state
inside the recurrence; then, like the other cells, they run the same equations in
:class:`~seq2seq.models.stack.LoopLayer`, which projects the inputs of all steps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import CELLS as CELL_NAMES
from seq2seq.models.custom_cells import (
    ElmanCell,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    PeepholeLSTMCell,
    ProjectedLSTMCell,
    RecurrentCell,
    State,
    init_recurrent,
)
from seq2seq.models.stack import LoopLayer, Recurrent, RecurrentStack

__all__ = ["CELLS", "Recurrent", "State", "TorchRecurrent", "make_recurrent"]

_GATES: dict[Any, int] = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}


class TorchRecurrent(Recurrent):
    """torch.nn.RNN / GRU / LSTM behind the batch-first-state interface above.
    ``proj_size`` > 0 (LSTM only) gives torch's LSTMP, the equations of
    :class:`~seq2seq.models.custom_cells.ProjectedLSTMCell`."""

    def __init__(
        self,
        module: Callable[..., nn.RNNBase],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
        proj_size: int = 0,
        recurrent_init: str = "default",
    ) -> None:
        super().__init__()
        extra: dict[str, Any] = {"proj_size": proj_size} if proj_size else {}
        self.rnn = module(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.num_states = 2 if module is nn.LSTM else 1
        self.state_sizes = (proj_size or hidden_size, hidden_size)[: self.num_states]
        self.output_size = self.num_directions * self.state_sizes[0]
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                init_recurrent(param, _GATES[module], recurrent_init)
            if module is nn.LSTM:
                # Gers et al. (2000): start by remembering. torch's gate order is i, f, g, o.
                with torch.no_grad():
                    if name.startswith("bias_ih"):
                        param[hidden_size : 2 * hidden_size].fill_(forget_bias)
                    elif name.startswith("bias_hh"):
                        param[hidden_size : 2 * hidden_size].zero_()

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """x: (N, L, H_in) -> output (N, L, D*S_0), state (each (N, num_layers*D, S_k))."""
        hx: Any = None  # what torch expects: h, or (h, c) for an LSTM
        if state is not None:
            layer_major = tuple(s.transpose(0, 1).contiguous() for s in state)
            hx = layer_major if self.num_states == 2 else layer_major[0]
        if lengths is None:
            output, hn = self.rnn(x, hx)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, hn = self.rnn(packed, hx)
            output, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.size(1))
        final = hn if isinstance(hn, tuple) else (hn,)
        return output, tuple(s.transpose(0, 1) for s in final)


# Cells with a torch kernel, and the one-step form of every cell (input, hidden, proj).
_TORCH: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM, "lstmp": nn.LSTM}
_STEPS: dict[str, Callable[[int, int, int], RecurrentCell]] = {
    "rnn": lambda i, h, p: ElmanCell(i, h),
    "gru": lambda i, h, p: GRUCell(i, h),
    "lstm": lambda i, h, p: LSTMCell(i, h),
    "lstm_peephole": lambda i, h, p: PeepholeLSTMCell(i, h),
    "lstmp": ProjectedLSTMCell,
    "layernorm_gru": lambda i, h, p: LayerNormGRUCell(i, h),
    "layernorm_lstm": lambda i, h, p: LayerNormLSTMCell(i, h),
}


def _step_cell(
    name: str, input_size: int, hidden_size: int, proj_size: int, forget_bias: float, init: str
) -> RecurrentCell:
    cell = _STEPS[name](input_size, hidden_size, proj_size)
    cell.reset_parameters(forget_bias, init)
    return cell


def _builder(name: str) -> Callable[..., Recurrent]:
    def build(
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        proj_size: int = 0,
        residual: bool = False,
        forget_bias: float = 1.0,
        recurrent_init: str = "default",
        variational: bool = False,
    ) -> Recurrent:
        if (proj_size > 0) != (name == "lstmp"):
            raise ValueError(f"proj_size > 0 is for the lstmp cell only, and lstmp needs it (got {proj_size})")
        d = 2 if bidirectional else 1
        sizes = [input_size] + [d * (proj_size or hidden_size)] * (num_layers - 1)
        if name in _TORCH and not variational:
            torch_rnn = partial(
                TorchRecurrent,
                _TORCH[name],
                hidden_size=hidden_size,
                bidirectional=bidirectional,
                forget_bias=forget_bias,
                proj_size=proj_size,
                recurrent_init=recurrent_init,
            )
            if not residual:  # one call for the whole stack (cuDNN runs its layers back to back)
                return torch_rnn(input_size, num_layers=num_layers, dropout=dropout)
            return RecurrentStack([torch_rnn(size) for size in sizes], dropout, residual=True)
        layers = [
            LoopLayer(
                partial(_step_cell, name, size, hidden_size, proj_size, forget_bias, recurrent_init),
                bidirectional,
                recurrent_dropout=dropout if variational else 0.0,
            )
            for size in sizes
        ]
        return RecurrentStack(layers, dropout, residual, variational)

    return build


# name -> builder(input_size, hidden_size, num_layers, bidirectional, dropout, **options); the
# names are the config's choices (seq2seq.config.CELLS), which must each have a step cell above.
assert set(_STEPS) == set(CELL_NAMES), "every cell named in seq2seq.config.CELLS needs a step cell"
CELLS: dict[str, Callable[..., Recurrent]] = {name: _builder(name) for name in CELL_NAMES}


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    **options: Any,
) -> Recurrent:
    """Build a recurrent stack by cell name; see the module docstring for its interface.

    ``options``: ``proj_size`` (lstmp: output units P < hidden_size), ``residual`` (add
    each layer's input to its output above the first layer), ``forget_bias`` (LSTMs; 1),
    ``recurrent_init`` (``default`` or ``orthogonal``), ``variational`` (dropout with one
    mask per sequence between layers and on the recurrent state, Gal & Ghahramani 2016)."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    return CELLS[cell](input_size, hidden_size, num_layers, bidirectional, dropout, **options)
