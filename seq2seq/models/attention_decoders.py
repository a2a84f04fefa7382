"""Attention decoders: Bahdanau et al. (2015) and Luong et al. (2015).

Both follow the decoder interface of :mod:`seq2seq.models.decoders` (``prepare``,
``init_state``, teacher-forced ``forward`` and ``step``) and return the attention weights
(N, T, S) with their features. The attention's keys are projected once per batch in
``prepare`` and travel in :attr:`Encoded.keys`.

Where no step's input depends on an earlier step's output (Luong without input feeding),
the teacher-forced recurrence runs in one call over all steps and the attention for all steps is
one batched product. Otherwise the step loop does only what must be done per step: the
target embeddings, the keys and the output layer are computed for all steps at once.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from seq2seq.models.attention import make_attention
from seq2seq.models.cells import State, make_recurrent
from seq2seq.models.decoders import Decoder, DecoderOutput, DeepOutputDecoder
from seq2seq.models.encoder import Encoded


def _attend(attention: nn.Module, query: Tensor, encoded: Encoded) -> tuple[Tensor, Tensor]:
    assert encoded.keys is not None, "call decoder.prepare(encoded) before decoding"
    context, weights = attention(query, encoded.keys, encoded.outputs, encoded.mask)
    return context, weights


class BahdanauDecoder(DeepOutputDecoder):
    """Bahdanau et al. (2015), App. A.2.2, with a GRU, LSTM or any cell:

        c_t = Σ_j a_tj h_j,  a_t = softmax_j(v^T tanh(W s_{t-1} + U h_j))    (Eq. 5–6)
        s_t = f(s_{t-1}, [E y_{t-1}; c_t])                                    (Eq. 4)
        t_t = maxout(O_s s_t + O_y E y_{t-1} + O_c c_t)                       (App. A.2.2)

    The query s_{t-1} is the top layer's previous hidden state. The deep output reads the
    new state s_t, as in dl4mt and Nematus (the paper's equation shows s_{t-1}).

    State: the cell's state (h, or h and c; each (N, num_layers, S_k)). The recurrence and
    the deep output are :class:`~seq2seq.models.decoders.DeepOutputDecoder`'s.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        context_size: int,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
        attention: str = "mlp",
        attention_size: int = 0,
        output_layer: str = "maxout",
        output_size: int = 256,
        padding_idx: int = 0,
        **cell_options: Any,
    ) -> None:
        super().__init__(
            vocab_size,
            embedding_dim,
            hidden_size,
            context_size,
            num_layers,
            cell,
            dropout,
            output_layer,
            output_size,
            padding_idx,
            **cell_options,
        )
        # query: D * H, or the projection size
        self.attention = make_attention(attention, self.rnn.output_size, context_size, attention_size or hidden_size)

    def prepare(self, encoded: Encoded) -> Encoded:
        return encoded._replace(keys=self.attention.keys(encoded.outputs))

    def forward(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        """prev: (N, T) previous target ids (BOS first) -> features (N, T, O), attention (N, T, S)."""
        emb = self.dropout(self.embedding(prev))  # all steps at once
        outputs, contexts, weights = [], [], []
        for t in range(prev.size(1)):
            query = state[0][:, -1:]  # (N, 1, H): s_{t-1}, top layer
            context, w = _attend(self.attention, query, encoded)
            s, state = self.rnn(torch.cat([emb[:, t : t + 1], context], dim=-1), state)
            outputs.append(s)
            contexts.append(context)
            weights.append(w)
        features = self.deep_output(torch.cat(outputs, dim=1), emb, torch.cat(contexts, dim=1))
        return DecoderOutput(features, state, torch.cat(weights, dim=1))


class LuongDecoder(Decoder):
    """Luong et al. (2015), Sec. 3, global attention on top of the recurrence:

        h_t = f(h_{t-1}, [E y_{t-1}; h̃_{t-1}])     (input feeding, Sec. 3.3; else f(h_{t-1}, E y_{t-1}))
        a_t = softmax_j(score(h_t, h̄_j))            (Eq. 7; score: dot, general or mlp, Eq. 8)
        c_t = Σ_j a_tj h̄_j
        h̃_t = tanh(W_c [c_t; h_t])                  (Eq. 5)

    and p(y_t | ...) = softmax(W_s h̃_t) (Eq. 6) is applied by the model; h̃_t has
    ``output_size`` features. Without input feeding, training runs the recurrence over
    the whole target in one call and attends for all steps in one product.

    State: the cell's state (each (N, num_layers, S_k)), then h̃_{t-1} (N, O) with input
    feeding. ``cell_options`` go to :func:`~seq2seq.models.cells.make_recurrent`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        context_size: int,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
        attention: str = "general",
        attention_size: int = 0,
        input_feeding: bool = True,
        output_size: int = 256,
        padding_idx: int = 0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        # The settings, kept as torch.nn.GRU keeps its own (seq2seq.kernels reads them).
        self.cell, self.num_layers, self.attention_type, self.input_feeding = cell, num_layers, attention, input_feeding
        self.residual = bool(cell_options.get("residual", False))
        self.variational = bool(cell_options.get("variational", False))
        input_size = embedding_dim + (output_size if input_feeding else 0)
        self.rnn = make_recurrent(cell, input_size, hidden_size, num_layers, False, dropout, **cell_options)
        query_size = cast(int, self.rnn.output_size)  # D * H, or the projection size
        self.attention = make_attention(attention, query_size, context_size, attention_size or hidden_size)
        self.combine = nn.Linear(context_size + query_size, output_size, bias=False)
        self.output_size = output_size

    def prepare(self, encoded: Encoded) -> Encoded:
        return encoded._replace(keys=self.attention.keys(encoded.outputs))

    def init_state(self, encoded: Encoded, hidden: State) -> State:
        if not self.input_feeding:
            return hidden
        return (*hidden, hidden[0].new_zeros(hidden[0].size(0), self.output_size))

    def _attentional(self, h: Tensor, encoded: Encoded) -> tuple[Tensor, Tensor]:
        """h: (N, T, H) top-layer outputs -> dropped-out h̃ (N, T, O), weights (N, T, S)."""
        context, weights = _attend(self.attention, h, encoded)
        return self.dropout(torch.tanh(self.combine(torch.cat([context, h], dim=-1)))), weights

    def forward(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        """prev: (N, T) previous target ids (BOS first) -> features (N, T, O), attention (N, T, S)."""
        emb = self.dropout(self.embedding(prev))
        if not self.input_feeding:
            h, hidden = self.rnn(emb, state)
            features, weights = self._attentional(h, encoded)
            return DecoderOutput(features, hidden, weights)
        *hidden_list, feed = state
        hidden = tuple(hidden_list)
        outputs, all_weights = [], []
        for t in range(prev.size(1)):
            h, hidden = self.rnn(torch.cat([emb[:, t : t + 1], feed[:, None]], dim=-1), hidden)
            out, w = self._attentional(h, encoded)
            feed = out[:, 0]
            outputs.append(out)
            all_weights.append(w)
        return DecoderOutput(torch.cat(outputs, dim=1), (*hidden, feed), torch.cat(all_weights, dim=1))
