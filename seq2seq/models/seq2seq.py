"""The composed encoder–decoder: encode, teacher-forced forward, the loss, and one search step."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.bridges import Bridge
from seq2seq.models.cells import State
from seq2seq.models.decoders import Decoder, DecoderOutput
from seq2seq.models.encoder import Encoded, Encoder


class StepOutput(NamedTuple):
    log_probs: Tensor  # (N, V)
    state: Any  # the decoder's state: a tuple of batch-first tensors (nested for an ensemble)
    attention: Tensor | None = None  # (N, S)


class Seq2Seq(nn.Module):
    """encoder -> bridge -> decoder -> output projection ``generator`` (O -> V), and
    p(y_t | y_<t, x) = softmax(generator(features_t)).

    Search (:mod:`seq2seq.search`) uses :meth:`encode`, :meth:`init_state` and :meth:`step`;
    the trainer uses :meth:`forward` and :meth:`cross_entropy`.
    """

    def __init__(self, encoder: Encoder, bridge: Bridge, decoder: Decoder, generator: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridge = bridge
        self.decoder = decoder
        self.generator = generator

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src: (N, S), src_lengths: (N,) -> :class:`Encoded`, with the decoder's attention
        keys when it attends."""
        return self.decoder.prepare(self.encoder(src, src_lengths))

    def init_state(self, encoded: Encoded) -> State:
        return self.decoder.init_state(encoded, self.bridge(encoded))

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing. src: (N, S), tgt_in: (N, T) (BOS + target) -> features (N, T, O);
        :meth:`logits` maps features to vocabulary scores, so the trainer can project only
        the real (unpadded) positions."""
        return self.teacher_forced(src, src_lengths, tgt_in).features

    def teacher_forced(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> DecoderOutput:
        """Like :meth:`forward`, with the final state and the attention (N, T, S)."""
        encoded = self.encode(src, src_lengths)
        out: DecoderOutput = self.decoder(tgt_in, self.init_state(encoded), encoded)
        return out

    def logits(self, features: Tensor) -> Tensor:
        """(..., O) -> (..., V)."""
        logits: Tensor = self.generator(features)
        return logits

    def cross_entropy(self, features: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """The summed cross-entropy of softmax(generator(features)) against ``target``, with
        label smoothing ε (Szegedy et al. 2016: the target distribution is (1 - ε)·onehot + ε/V).
        features: (M, O) of the real target positions; target: (M,) ids -> loss ()."""
        return F.cross_entropy(self.logits(features), target, label_smoothing=label_smoothing, reduction="sum")

    def step(self, prev: Tensor, state: State, encoded: Encoded, vocab: Tensor | None = None) -> StepOutput:
        """One decoding step. prev: (N,) -> log-probabilities (N, V); with ``vocab`` (V',)
        target ids (a :mod:`seq2seq.data.shortlist`), (N, V') normalised over those ids only."""
        out = self.decoder.step(prev, state, encoded)
        return StepOutput(torch.log_softmax(self.vocab_logits(out.features, vocab), dim=-1), out.state, out.attention)

    def vocab_logits(self, features: Tensor, vocab: Tensor | None) -> Tensor:
        """:meth:`logits` for all of the vocabulary, or for the rows ``vocab`` (V',) only."""
        if vocab is None:
            return self.logits(features)
        bias = self.generator.bias
        return F.linear(features, self.generator.weight[vocab], None if bias is None else bias[vocab])
