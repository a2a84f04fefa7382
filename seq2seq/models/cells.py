"""Recurrent layers behind one interface, chosen by name.

Every recurrent layer here is a stack (``num_layers``, optionally ``bidirectional``) with
torch.nn's argument names and ``batch_first=True``, and one calling convention::

    output, state = layer(x, state=None, lengths=None)

- ``x``: (N, L, H_in); ``lengths``: (N,) real lengths on the CPU, or None for full length.
- ``output``: (N, L, D * H), zero at padded positions.
- ``state``: a tuple of tensors, each (N, num_layers * D, H), **batch first** so that search
  can reorder any state with ``index_select(0, ...)``; one tensor (h) for ``rnn`` and
  ``gru``, two (h, c) for ``lstm``. Layer-major order as in torch: index ``l * D + d``.

Standard cells run torch's fused kernels (cuDNN on GPU). A new cell (issue: peephole,
projected or layer-normalised LSTM) is one more entry in :data:`CELLS` producing a module
with this interface; the encoder and decoders never see which cell runs.

Cells: ``rnn`` (Elman: h' = tanh(W x + U h + b)); ``gru`` (Cho et al. 2014, torch's form:
r = σ(W_r x + U_r h), z = σ(W_z x + U_z h), n = tanh(W x + r ⊙ (U h)),
h' = (1 − z) ⊙ n + z ⊙ h, i.e. z gates the *old* state); ``lstm`` (Hochreiter & Schmidhuber
1997 with the forget gate of Gers et al. 2000; forget-gate bias initialised to 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = tuple[Tensor, ...]


class FusedRecurrent(nn.Module):
    """torch.nn.RNN / GRU / LSTM behind the batch-first-state interface above."""

    def __init__(
        self,
        module: Callable[..., nn.RNNBase],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.rnn = module(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.num_states = 2 if module is nn.LSTM else 1
        if module is nn.LSTM:
            # Gers et al. (2000): start by remembering. torch's gate order is i, f, g, o.
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        param[hidden_size : 2 * hidden_size].fill_(forget_bias)
                elif name.startswith("bias_hh"):
                    with torch.no_grad():
                        param[hidden_size : 2 * hidden_size].zero_()

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def forward(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """x: (N, L, H_in) -> output (N, L, D*H), state (each (N, num_layers*D, H))."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # torch's CPU RNN kernels have no fast bf16 path (about 15x slower under
            # autocast): run the recurrence in float32, the rest of the model in bf16.
            with torch.autocast("cpu", enabled=False):
                return self._run(x.float(), None if state is None else tuple(s.float() for s in state), lengths)
        return self._run(x, state, lengths)

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


def _fused(module: Callable[..., nn.RNNBase]) -> Callable[..., FusedRecurrent]:
    def build(
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> FusedRecurrent:
        return FusedRecurrent(module, input_size, hidden_size, num_layers, bidirectional, dropout)

    return build


# name -> builder(input_size, hidden_size, num_layers, bidirectional, dropout)
CELLS: dict[str, Callable[..., nn.Module]] = {
    "rnn": _fused(nn.RNN),
    "gru": _fused(nn.GRU),
    "lstm": _fused(nn.LSTM),
}


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a recurrent stack by cell name; see the module docstring for its interface."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    return CELLS[cell](input_size, hidden_size, num_layers, bidirectional, dropout)
