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

Speed: ``rnn``, ``gru``, ``lstm`` and ``lstmp`` run torch's fused kernels (cuDNN on GPU)
unless variational dropout asks for a mask on the recurrent state inside the recurrence;
then, like the other cells, they run the same equations in
:class:`~seq2seq.models.stack.LoopLayer`, which projects the inputs of all steps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

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
from seq2seq.models.dropout import dropout_mask
from seq2seq.models.gru_loop import gru_loop
from seq2seq.models.stack import LoopLayer, Recurrent, RecurrentStack, in_float32_on_cpu, reverse_padded

__all__ = ["CELLS", "FusedRecurrent", "Recurrent", "State", "make_recurrent"]

_GATES: dict[Any, int] = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}


class FusedRecurrent(Recurrent):
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
        self.is_gru = module is nn.GRU
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
        # torch's CPU RNN kernels have no fast bf16 path (about 15x slower under autocast): a
        # GRU runs as seq2seq.models.gru_loop there, with bf16 products; the others in float32.
        if self.is_gru and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return self._run_loop(x, state, lengths)
        return in_float32_on_cpu(self._run, x, state, lengths)

    def _run_loop(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        """The GRU stack through :func:`~seq2seq.models.gru_loop.gru_loop`, layer by layer."""
        n, length, d = x.size(0), x.size(1), self.num_directions
        lengths = None if lengths is None else lengths.to(x.device)
        valid = torch.ones(n, length, dtype=torch.bool, device=x.device)
        if lengths is not None:
            valid = torch.arange(length, device=x.device)[None, :] < lengths[:, None]
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.rnn.dropout > 0:  # torch.nn.GRU's dropout between layers
                x = x * dropout_mask(tuple(x.shape), self.rnn.dropout, x.dtype, x.device)
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

    def _run(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
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
_FUSED: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM, "lstmp": nn.LSTM}
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
        if name in _FUSED and not variational:
            fused = partial(
                FusedRecurrent,
                _FUSED[name],
                hidden_size=hidden_size,
                bidirectional=bidirectional,
                forget_bias=forget_bias,
                proj_size=proj_size,
                recurrent_init=recurrent_init,
            )
            if not residual:  # one call for the whole stack (cuDNN runs its layers back to back)
                return fused(input_size, num_layers=num_layers, dropout=dropout)
            return RecurrentStack([fused(size) for size in sizes], dropout, residual=True)
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


# name -> builder(input_size, hidden_size, num_layers, bidirectional, dropout, **options)
CELLS: dict[str, Callable[..., Recurrent]] = {name: _builder(name) for name in _STEPS}


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
