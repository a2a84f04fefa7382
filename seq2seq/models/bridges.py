"""Bridges: from the encoder's summary to the decoder's initial recurrent state."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seq2seq.models.cells import State


class TanhBridge(nn.Module):
    """Cho et al. (2014), Sec. 2.2 / App. A.1: s_0 = tanh(V c), one V per decoder state
    component and layer.

    The decoder's hidden state h_0 comes from the encoder's final hidden summary. An LSTM
    decoder's cell state c_0 = tanh(V_c c') comes from the encoder's final *cell* summary c'
    when the encoder is an LSTM, and from its hidden summary otherwise.

    summary: (N, K_enc, C) -> state: K_dec tensors of (N, num_layers, S_k); S_k is
    ``state_sizes[k]`` where given (a projected LSTM's h is smaller), else ``hidden_size``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        num_states: int,
        state_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.state_sizes = tuple(state_sizes or [hidden_size] * num_states)
        self.projections = nn.ModuleList(nn.Linear(input_size, num_layers * size) for size in self.state_sizes)

    def forward(self, summary: Tensor) -> State:
        n, k_enc = summary.size(0), summary.size(1)
        return tuple(
            torch.tanh(proj(summary[:, min(k, k_enc - 1)])).view(n, self.num_layers, size)
            for k, (proj, size) in enumerate(zip(self.projections, self.state_sizes))
        )


class ZeroBridge(nn.Module):
    """The decoder starts from zeros; it sees the source only through its inputs."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        num_states: int,
        state_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.state_sizes = tuple(state_sizes or [hidden_size] * num_states)

    def forward(self, summary: Tensor) -> State:
        return tuple(summary.new_zeros(summary.size(0), self.num_layers, size) for size in self.state_sizes)


BRIDGES: dict[str, type[nn.Module]] = {"tanh": TanhBridge, "zero": ZeroBridge}
