"""The encoder's recurrent layers as ONNX's own RNN, GRU and LSTM operators, for export.

torch's recurrent modules read padded batches as packed sequences, which the exporters do
not carry over (``torch.export`` fails at ``pack_padded_sequence``; the TorchScript exporter
writes a graph whose outputs differ from torch's). ONNX's recurrent operators take the real
lengths instead (``sequence_lens``) and compute what packing does: each direction runs over
a sequence's own positions only (the reverse one from its last real position), the outputs
are zero beyond it and the final state is the state there. :class:`OnnxRecurrent` is a
layer of the :mod:`seq2seq.models.cells` interface whose graph is one such operator per
layer; :func:`exportable` swaps it in for the layers of a recurrent stack.

Only the exported graph counts: when traced, :class:`OnnxRecurrent` returns placeholders of
the right shapes, and the tests compare onnxruntime's outputs with the torch model's.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn

from seq2seq.models.cells import TorchRecurrent
from seq2seq.models.custom_cells import (
    ElmanCell,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    ProjectedLSTMCell,
    RecurrentCell,
)
from seq2seq.models.stack import LoopLayer, Recurrent, RecurrentStack

# ONNX operator per number of gate blocks, and the permutation of torch's gate blocks into
# ONNX's order: GRU r, z, n -> z, r, h; LSTM i, f, g, o -> i, o, f, c.
_OPS = {1: "RNN", 3: "GRU", 4: "LSTM"}
_ORDER = {1: [0], 3: [1, 0, 2], 4: [0, 3, 1, 2]}


class _OnnxOp(torch.autograd.Function):
    """One ONNX recurrent operator over time-major x (L, N, I) with lengths (N,) int32."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, lengths: Tensor, w: Tensor, r: Tensor, b: Tensor, p: Tensor | None, op: str
    ) -> tuple[Tensor, ...]:
        d, h = w.size(0), r.size(2)
        y = x.new_zeros(x.size(0), d, x.size(1), h)  # placeholders: see the module docstring
        final = x.new_zeros(d, x.size(1), h)
        return (y, final, final.clone()) if op == "LSTM" else (y, final)

    @staticmethod
    def symbolic(g: Any, x: Any, lengths: Any, w: Any, r: Any, b: Any, p: Any, op: str) -> Any:
        d, h = w.type().sizes()[0], r.type().sizes()[2]
        attrs: dict[str, Any] = {"hidden_size_i": h, "direction_s": "bidirectional" if d == 2 else "forward"}
        if op == "GRU":
            attrs["linear_before_reset_i"] = 1  # torch's GRU: r multiplies (U_n h + c_n)
        inputs = [x, w, r, b, lengths] + ([_absent(g), _absent(g), p] if p is not None else [])
        return g.op(op, *inputs, outputs=3 if op == "LSTM" else 2, **attrs)


def _absent(g: Any) -> Any:
    """An omitted optional input (initial_h, initial_c: zeros), as torch's own symbolics write it."""
    node = g.op("prim::Constant")
    node.setType(torch._C.OptionalType.ofTensor())
    return node


class OnnxRecurrent(Recurrent):
    """One recurrent layer (one or two directions) as an ONNX operator. ``weights``: per
    direction (W_ih, W_hh, b_ih, b_hh[, peepholes (3, H): p_i, p_f, p_o]) in torch's gate
    order. Interface: x (N, L, I), lengths (N,) -> output (N, L, D·H), state each (N, D, H)."""

    def __init__(self, gates: int, weights: list[tuple[Tensor, ...]]) -> None:
        super().__init__()
        order = _ORDER[gates]

        def blocks(t: Tensor) -> Tensor:
            return torch.cat([t.chunk(gates, 0)[i] for i in order]).detach().float()

        self.op = _OPS[gates]
        self.register_buffer("w", torch.stack([blocks(ws[0]) for ws in weights]))
        self.register_buffer("r", torch.stack([blocks(ws[1]) for ws in weights]))
        self.register_buffer("b", torch.stack([torch.cat([blocks(ws[2]), blocks(ws[3])]) for ws in weights]))
        peep = [ws[4].detach().float()[[0, 2, 1]].reshape(-1) for ws in weights if len(ws) > 4]  # ONNX: i, o, f
        self.register_buffer("p", torch.stack(peep) if peep else None)
        self.hidden_size = weights[0][1].size(1)
        self.num_layers, self.num_directions = 1, len(weights)
        self.num_states = 2 if gates == 4 else 1
        self.state_sizes = (self.hidden_size,) * self.num_states
        self.output_size = self.num_directions * self.hidden_size

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        assert state is None and lengths is not None, "the encoder starts from zeros and knows its lengths"
        n, length = x.size(0), x.size(1)
        out = _OnnxOp.apply(x.transpose(0, 1), lengths.int(), self.w, self.r, self.b, self.p, self.op)
        y = out[0].permute(2, 0, 1, 3).reshape(n, length, self.output_size)  # (L, D, N, H) -> (N, L, D·H)
        return y, tuple(s.transpose(0, 1) for s in out[1:])


def _from_torch(module: TorchRecurrent) -> Recurrent:
    rnn: Any = module.rnn
    gates = {"RNN_TANH": 1, "GRU": 3, "LSTM": 4}[rnn.mode]
    layers = []
    for layer in range(rnn.num_layers):
        sides = [""] + (["_reverse"] if rnn.bidirectional else [])
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        layers.append(OnnxRecurrent(gates, [tuple(getattr(rnn, f"{k}_l{layer}{s}") for k in names) for s in sides]))
    return layers[0] if len(layers) == 1 else RecurrentStack(layers)


def _cell_weights(cell: RecurrentCell) -> tuple[Tensor, ...]:
    # The loop cells keep the input bias b and, for a GRU, the recurrent bias c apart.
    c = getattr(cell, "bias_hh", None)
    peep = getattr(cell, "weight_peep", None)
    return (cell.weight_ih, cell.weight_hh, cell.bias, torch.zeros_like(cell.bias) if c is None else c) + (
        () if peep is None else (peep,)
    )


# The loop cells ONNX has an operator for (exact types: their subclasses compute otherwise).
_LOOP_CELLS: dict[type, int] = {ElmanCell: 1, GRUCell: 3, LSTMCell: 4, PeepholeLSTMCell: 4}


def _from_stack(module: RecurrentStack) -> Recurrent:
    return RecurrentStack([exportable(layer) for layer in module.layers], residual=module.residual)


def _from_loop(module: LoopLayer) -> Recurrent:
    cells = list(module.cells)
    gates = _LOOP_CELLS.get(type(cells[0]))
    if gates is None:
        raise ValueError(f"ONNX has no recurrent operator for {type(cells[0]).__name__}")
    return OnnxRecurrent(gates, [_cell_weights(c) for c in cells])  # type: ignore[arg-type]


def _from_torch_checked(module: TorchRecurrent) -> Recurrent:
    if module.state_sizes[0] != module.hidden_size:
        raise ValueError("ONNX's LSTM has no output projection (lstmp)")
    return _from_torch(module)


_CONVERT: dict[type, Any] = {TorchRecurrent: _from_torch_checked, RecurrentStack: _from_stack, LoopLayer: _from_loop}


def exportable(module: nn.Module) -> Recurrent:
    """``module``, a recurrent stack of :func:`~seq2seq.models.cells.make_recurrent` in eval
    mode, with its layers as :class:`OnnxRecurrent`; ValueError where ONNX has no operator
    for its cell."""
    convert = _CONVERT.get(type(module))
    if convert is None:
        raise ValueError(f"cannot export a {type(module).__name__}")
    result: Recurrent = convert(module)
    return result


# torch's RNN mode -> the one-step cell of the same equations
_STEP_CELLS: dict[str, type[RecurrentCell]] = {"RNN_TANH": ElmanCell, "GRU": GRUCell, "LSTM": LSTMCell}


def _loop_cell(rnn: Any, layer: int) -> RecurrentCell:
    """Layer ``layer`` of torch's (unidirectional) RNN, GRU or LSTM as the one-step cell of
    :mod:`seq2seq.models.custom_cells` with the same weights."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
    b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
    if rnn.proj_size:  # lstmp
        cell: Any = ProjectedLSTMCell(w_ih.size(1), rnn.hidden_size, rnn.proj_size)
        with torch.no_grad():
            cell.weight_hr.copy_(getattr(rnn, f"weight_hr_l{layer}"))
    else:
        cell = _STEP_CELLS[rnn.mode](w_ih.size(1), rnn.hidden_size)
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih)
        cell.weight_hh.copy_(w_hh)
        if rnn.mode == "GRU":  # r multiplies the recurrent bias: the cell keeps it apart
            cell.bias.copy_(b_ih)
            cell.bias_hh.copy_(b_hh)
        else:
            cell.bias.copy_(b_ih + b_hh)
    result: RecurrentCell = cell
    return result


def _steps_from_torch(module: TorchRecurrent) -> Recurrent:
    rnn: Any = module.rnn
    if module.num_directions != 1:
        raise ValueError("a decoder's recurrence is unidirectional")
    layers = [LoopLayer(partial(_loop_cell, rnn, i)) for i in range(rnn.num_layers)]
    return RecurrentStack(layers)


def _steps_from_stack(module: RecurrentStack) -> Recurrent:
    return RecurrentStack([stepwise(layer) for layer in module.layers], residual=module.residual)


_STEPWISE: dict[type, Any] = {TorchRecurrent: _steps_from_torch, RecurrentStack: _steps_from_stack}


def stepwise(module: Any) -> Recurrent:
    """``module``, a decoder's recurrent stack in eval mode, with torch's recurrent modules
    as loop layers of one-step cells. Traced over the single step of a decoder, a loop layer
    is a few matrix products and pointwise operations; ONNX's recurrent operators are slower
    for one step, and their products are out of reach of int8 quantization (MatMul only)."""
    convert = _STEPWISE.get(type(module))
    result: Any = module if convert is None else convert(module)  # a loop layer already is one
    return cast(Recurrent, result)
