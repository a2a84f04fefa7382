"""Decoders, on one base class :class:`Decoder`. Each takes an explicit state and returns
the next one; none keeps per-batch state on ``self``::

    encoded = decoder.prepare(encoded)                   # once per batch: attention keys
    state = decoder.init_state(encoded, hidden)          # hidden: from a bridge
    out = decoder(prev_tokens, state, encoded)           # teacher forced, (N, T)
    out = decoder.step(prev_token, state, encoded)       # one step, (N,)

``out`` is a :class:`DecoderOutput`: features (N, T, O) or (N, O) for the output
projection, the next state, and attention weights where the decoder has them.
Decoder states are tuples of batch-first tensors. The attention decoders are in
:mod:`seq2seq.models.attention_decoders`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.models.cells import State, make_recurrent
from seq2seq.models.encoder import Encoded


class DecoderOutput(NamedTuple):
    features: Tensor  # (N, T, O) or (N, O) for a step
    state: State
    attention: Tensor | None = None  # (N, T, S) or (N, S) where the decoder attends


class Decoder(nn.Module):
    """What the model, the trainer and search need of a decoder. Subclasses implement
    :meth:`forward` (teacher forcing over T steps) and may override the others."""

    embedding: nn.Embedding  # E, the target embeddings
    output_size: int  # O, the size of the features the output projection reads

    def prepare(self, encoded: Encoded) -> Encoded:
        """Once per source batch, before decoding it: what every step reuses (attention keys)."""
        return encoded

    def init_state(self, encoded: Encoded, hidden: State) -> State:
        """The state before the first step, from the bridge's ``hidden`` (each (N, num_layers, S_k))."""
        return hidden

    def forward(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        """prev: (N, T) previous target ids (BOS first) -> features (N, T, O)."""
        raise NotImplementedError

    def step(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        """One step: prev (N,) -> features (N, O), attention (N, S) where there is one.
        The teacher-forced forward over a single step, by default."""
        out = self(prev[:, None], state, encoded)
        attention = None if out.attention is None else out.attention[:, 0]
        return DecoderOutput(out.features[:, 0], out.state, attention)


class Maxout(nn.Module):
    """Goodfellow et al. (2013): a linear map to ``pool * out_features`` units, then the max
    over each group of ``pool``. (N, ..., in) -> (N, ..., out)."""

    def __init__(self, in_features: int, out_features: int, pool: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, pool * out_features)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        return y.view(*y.shape[:-1], -1, self.pool).amax(dim=-1)


OUTPUT_LAYERS: dict[str, type[nn.Module]] = {"maxout": Maxout, "linear": nn.Linear}


class DeepOutputDecoder(Decoder):
    """What the decoders of Cho et al. (2014) and Bahdanau et al. (2015) share: a recurrence
    over [E y_{t-1}; c_t] and the deep output

        t_t = g(O_s s_t + O_y E y_{t-1} + O_c c_t)      (Cho et al., Eq. 8 / App. A.1.2)

    with g a maxout (or a linear map, ``output_layer``), where c_t is the fixed summary
    (:class:`ContextDecoder`) or the attention's context
    (:class:`~seq2seq.models.attention_decoders.BahdanauDecoder`). ``cell_options`` go to
    :func:`~seq2seq.models.cells.make_recurrent`.
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
        output_layer: str = "maxout",
        output_size: int = 256,
        padding_idx: int = 0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if output_layer not in OUTPUT_LAYERS:
            raise ValueError(f"unknown output layer {output_layer!r}; choose one of {', '.join(OUTPUT_LAYERS)}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_recurrent(
            cell, embedding_dim + context_size, hidden_size, num_layers, False, dropout, **cell_options
        )
        self.output = OUTPUT_LAYERS[output_layer](self.rnn.output_size + embedding_dim + context_size, output_size)
        self.output_size = output_size

    def deep_output(self, s: Tensor, emb: Tensor, context: Tensor) -> Tensor:
        """s: (N, T, S_0) states, emb: (N, T, E) dropped-out E y_{t-1}, context: (N, T, C) ->
        dropped-out t_t (N, T, O)."""
        features: Tensor = self.dropout(self.output(torch.cat([self.dropout(s), emb, context], dim=-1)))
        return features


class ContextDecoder(DeepOutputDecoder):
    """The RNN Encoder–Decoder decoder of Cho et al. (2014), Sec. 2.2 and App. A.1.

    The summary c (the encoder's final state, C features) is fed to every step and to the
    output layer:

        s_t = f(s_{t-1}, [E y_{t-1}; c])                  (recurrent cell, Eq. in A.1.2)
        t_t = maxout(O_h s_t + O_y E y_{t-1} + O_c c)     (deep output, Eq. 8 / A.1.2)

    and p(y_t | ...) = softmax(G t_t) is applied by the model. Because no input depends on
    an earlier output, the teacher-forced sequence runs in one recurrent call.

    State: the cell's state (h, or h and c; each (N, num_layers, S_k)) followed by c (N, C).
    """

    def init_state(self, encoded: Encoded, hidden: State) -> State:
        return (*hidden, encoded.summary[:, 0])

    def forward(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        """prev: (N, T) previous target ids (BOS first) -> features (N, T, O)."""
        *hidden, context = state
        emb = self.dropout(self.embedding(prev))
        ctx = context[:, None, :].expand(-1, prev.size(1), -1)
        s, hidden_next = self.rnn(torch.cat([emb, ctx], dim=-1), tuple(hidden))
        return DecoderOutput(self.deep_output(s, emb, ctx), (*hidden_next, context))
