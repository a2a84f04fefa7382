"""The encoder: embeddings and a (bidirectional, stacked) recurrence over the source."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.models.cells import make_recurrent


class Encoded(NamedTuple):
    """What the decoder and search see of a source batch. Every tensor is batch first, so
    beam search can repeat or reorder it with ``index_select(0, ...)``."""

    outputs: Tensor  # (N, S, D*H) annotations h_1..h_S, zero at padding
    mask: Tensor  # (N, S) bool, True at real source positions
    summary: Tensor  # (N, K, D*H) top layer's final states, directions concatenated;
    # K = 1 (h) for rnn/gru/lstmp, 2 (h, c) for the other LSTMs. Cho et al.'s c is summary[:, 0].
    keys: Tensor | None = None  # (N, S, A) attention keys, projected once by the decoder's prepare()


class Encoder(nn.Module):
    """Embeds source ids and runs a recurrent stack over them (packed: padding is skipped).

    Arguments follow torch.nn.GRU: ``hidden_size`` is per direction, so the outputs have
    ``output_size`` features, D * hidden_size (D = 2 if ``bidirectional`` else 1), or
    D * proj_size for ``lstmp``. ``cell_options`` go to
    :func:`~seq2seq.models.cells.make_recurrent` (proj_size, residual, ...).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        cell: str = "gru",
        dropout: float = 0.0,
        padding_idx: int = 0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, bidirectional, dropout, **cell_options)
        self.num_directions = 2 if bidirectional else 1
        self.output_size: int = self.rnn.output_size

    def forward(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src: (N, S) ids, src_lengths: (N,) -> :class:`Encoded`."""
        emb = self.dropout(self.embedding(src))
        outputs, final = self.rnn(emb, lengths=src_lengths)
        n, d = src.size(0), self.num_directions
        # final: each (N, num_layers*D, S_k); the top layer's directions are the last D rows.
        # A projected LSTM's cell state is wider than its output: only its h summarises.
        tops = [s[:, -d:].reshape(n, -1) for s in final]
        summary = torch.stack([s for s in tops if s.size(-1) == self.output_size], dim=1)
        positions = torch.arange(src.size(1), device=src.device)
        mask = positions[None, :] < src_lengths.to(src.device)[:, None]
        return Encoded(self.dropout(outputs), mask, summary)
