"""Bridges: from the encoded source to the decoder's initial recurrent state.

Every bridge maps an :class:`Encoded` batch to the decoder's state, one tensor per state
component (h, or h and c for an LSTM), each (N, num_layers, S_k): every decoder layer gets
its own initial state. Built as ``BRIDGES[name](input_size, hidden_size, num_layers,
num_states, state_sizes)`` with ``input_size`` the encoder's output size and ``state_sizes``
the size S_k of each state component (default: ``hidden_size`` for all; a projected LSTM's
h is smaller than its c).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seq2seq.models.cells import State
from seq2seq.models.encoder import Encoded


class Bridge(nn.Module):
    """What every bridge knows, the decoder's layers and the size of each state component,
    and what it does: ``bridge(encoded)`` -> the decoder's initial state, a tuple of
    (N, num_layers, S_k) tensors. A bridge with ``projected = True`` has one linear map per
    state component from the encoder's ``input_size`` features to all decoder layers at once."""

    projected = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        num_states: int,
        state_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_layers: int = num_layers
        self.state_sizes: tuple[int, ...] = tuple(state_sizes or [hidden_size] * num_states)
        if self.projected:
            self.projections = nn.ModuleList(nn.Linear(input_size, num_layers * size) for size in self.state_sizes)
        self.check_sizes(input_size)

    def check_sizes(self, input_size: int) -> None:
        """Raise ValueError where the bridge cannot map ``input_size`` features to the state."""

    def forward(self, encoded: Encoded) -> State:
        raise NotImplementedError


class TanhBridge(Bridge):
    """Cho et al. (2014), Sec. 2.2 / App. A.1: s_0 = tanh(V c), with c the encoder's final
    states (top layer, both directions concatenated) and one V per state component,
    mapped to every decoder layer.

    An LSTM decoder's cell state c_0 = tanh(V_c c') comes from the encoder's final *cell*
    state c' when the encoder is an LSTM, and from its final hidden state otherwise.
    """

    projected = True

    def forward(self, encoded: Encoded) -> State:
        summary = encoded.summary  # (N, K_enc, C)
        n, k_enc = summary.size(0), summary.size(1)
        return tuple(
            torch.tanh(proj(summary[:, min(k, k_enc - 1)])).view(n, self.num_layers, size)
            for k, (proj, size) in enumerate(zip(self.projections, self.state_sizes))
        )


class MeanBridge(Bridge):
    """s_0 = tanh(W_s mean_j h_j): the mean of the annotations over the real source
    positions, as in dl4mt and Nematus (Bahdanau et al. 2015, App. A.2.2, use the first
    backward annotation instead). An LSTM decoder's c_0 has its own W_c on the same mean."""

    projected = True

    def forward(self, encoded: Encoded) -> State:
        mask = encoded.mask[:, :, None]  # (N, S, 1)
        mean = encoded.outputs.masked_fill(~mask, 0).sum(dim=1) / mask.sum(dim=1)  # (N, C)
        n = mean.size(0)
        return tuple(
            torch.tanh(proj(mean)).view(n, self.num_layers, size)
            for proj, size in zip(self.projections, self.state_sizes)
        )


class LastBridge(Bridge):
    """s_0 = the encoder's final hidden state (top layer, directions concatenated), copied
    to every decoder layer without a projection; needs D * H_enc == H_dec. An LSTM decoder
    takes the encoder's final cell state when the encoder is an LSTM, and starts its cell
    state from zeros otherwise (a hidden state is not a cell state)."""

    def check_sizes(self, input_size: int) -> None:
        if input_size != self.state_sizes[0]:
            raise ValueError(
                f"bridge 'last' copies the encoder's final state ({input_size} features) into the decoder, whose "
                f"hidden_size is {self.state_sizes[0]}; make them equal or use bridge 'tanh' or 'mean'"
            )

    def forward(self, encoded: Encoded) -> State:
        summary = encoded.summary  # (N, K_enc, C)
        states = []
        for k, size in enumerate(self.state_sizes):
            has = k < summary.size(1) and summary.size(2) == size
            s = summary[:, k] if has else summary.new_zeros(summary.size(0), size)
            states.append(s[:, None, :].expand(-1, self.num_layers, -1).contiguous())
        return tuple(states)


class ZeroBridge(Bridge):
    """The decoder starts from zeros; it sees the source only through its inputs."""

    def forward(self, encoded: Encoded) -> State:
        n = encoded.summary.size(0)
        return tuple(encoded.summary.new_zeros(n, self.num_layers, size) for size in self.state_sizes)


# "tanh": concatenated final states -> linear -> tanh (Cho); "mean": mean annotation ->
# linear -> tanh (Bahdanau-style); "last": final state as is; "zero": zeros.
BRIDGES: dict[str, type[Bridge]] = {"tanh": TanhBridge, "mean": MeanBridge, "last": LastBridge, "zero": ZeroBridge}
