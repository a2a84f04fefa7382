"""Bridges: from the encoded source to the decoder's initial recurrent state.

Every bridge maps an :class:`Encoded` batch to the decoder's state, one tensor per state
component (h, or h and c for an LSTM), each (N, num_layers, H): every decoder layer gets
its own initial state. Built as ``BRIDGES[name](input_size, hidden_size, num_layers,
num_states)`` with ``input_size`` the encoder's output size (D * H_enc).
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.models.cells import State
from seq2seq.models.encoder import Encoded


class TanhBridge(nn.Module):
    """Cho et al. (2014), Sec. 2.2 / App. A.1: s_0 = tanh(V c), with c the encoder's final
    states (top layer, both directions concatenated) and one V per state component,
    mapped to every decoder layer.

    An LSTM decoder's cell state c_0 = tanh(V_c c') comes from the encoder's final *cell*
    state c' when the encoder is an LSTM, and from its final hidden state otherwise.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_states: int) -> None:
        super().__init__()
        self.shape = (num_layers, hidden_size)
        self.projections = nn.ModuleList(nn.Linear(input_size, num_layers * hidden_size) for _ in range(num_states))

    def forward(self, encoded: Encoded) -> State:
        summary = encoded.summary  # (N, K_enc, C)
        n, k_enc = summary.size(0), summary.size(1)
        return tuple(
            torch.tanh(proj(summary[:, min(k, k_enc - 1)])).view(n, *self.shape)
            for k, proj in enumerate(self.projections)
        )


class MeanBridge(nn.Module):
    """s_0 = tanh(W_s mean_j h_j): the mean of the annotations over the real source
    positions, as in dl4mt and Nematus (Bahdanau et al. 2015, App. A.2.2, use the first
    backward annotation instead). An LSTM decoder's c_0 has its own W_c on the same mean."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_states: int) -> None:
        super().__init__()
        self.shape = (num_layers, hidden_size)
        self.projections = nn.ModuleList(nn.Linear(input_size, num_layers * hidden_size) for _ in range(num_states))

    def forward(self, encoded: Encoded) -> State:
        mask = encoded.mask[:, :, None].to(encoded.outputs.dtype)  # (N, S, 1)
        mean = (encoded.outputs * mask).sum(dim=1) / mask.sum(dim=1)  # (N, C)
        return tuple(torch.tanh(proj(mean)).view(mean.size(0), *self.shape) for proj in self.projections)


class LastBridge(nn.Module):
    """s_0 = the encoder's final hidden state (top layer, directions concatenated), copied
    to every decoder layer without a projection; needs D * H_enc == H_dec. An LSTM decoder
    takes the encoder's final cell state when the encoder is an LSTM, and starts its cell
    state from zeros otherwise (a hidden state is not a cell state)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_states: int) -> None:
        super().__init__()
        if input_size != hidden_size:
            raise ValueError(
                f"bridge 'last' copies the encoder's final state ({input_size} features) into the decoder, whose "
                f"hidden_size is {hidden_size}; make them equal or use bridge 'tanh' or 'mean'"
            )
        self.num_layers = num_layers
        self.num_states = num_states

    def forward(self, encoded: Encoded) -> State:
        summary = encoded.summary  # (N, K_enc, C)
        states = []
        for k in range(self.num_states):
            s = summary[:, k] if k < summary.size(1) else torch.zeros_like(summary[:, 0])
            states.append(s[:, None, :].expand(-1, self.num_layers, -1).contiguous())
        return tuple(states)


class ZeroBridge(nn.Module):
    """The decoder starts from zeros; it sees the source only through its inputs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_states: int) -> None:
        super().__init__()
        self.shape = (num_layers, hidden_size)
        self.num_states = num_states

    def forward(self, encoded: Encoded) -> State:
        zeros = encoded.summary.new_zeros(encoded.summary.size(0), *self.shape)
        return (zeros,) * self.num_states


# "tanh": concatenated final states -> linear -> tanh (Cho); "mean": mean annotation ->
# linear -> tanh (Bahdanau-style); "last": final state as is; "zero": zeros.
BRIDGES: dict[str, type[nn.Module]] = {"tanh": TanhBridge, "mean": MeanBridge, "last": LastBridge, "zero": ZeroBridge}
