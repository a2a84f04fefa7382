"""The composed encoder–decoder: encode, teacher-forced forward, and one search step."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.cells import State
from seq2seq.models.decoders import Decoder, DecoderOutput
from seq2seq.models.encoder import Encoded, Encoder
from seq2seq.models.matmul import linear
from seq2seq.models.precision import CastCache, product_dtype


class StepOutput(NamedTuple):
    log_probs: Tensor  # (N, V) float32
    state: Any  # the decoder's state: a tuple of batch-first tensors (nested for an ensemble)
    attention: Tensor | None = None  # (N, S)


class Seq2Seq(nn.Module):
    """encoder -> bridge -> decoder -> output projection ``generator`` (O -> V).

    The loss lives in the trainer and search in :mod:`seq2seq.search`; they use
    :meth:`encode`, :meth:`init_state`, :meth:`forward`, :meth:`logits` and :meth:`step`.
    """

    def __init__(self, encoder: Encoder, bridge: nn.Module, decoder: Decoder, generator: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridge = bridge
        self.decoder: Decoder = decoder
        self.generator = generator
        self._cast_cache = CastCache()

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src: (N, S), src_lengths: (N,) -> :class:`Encoded`, with the decoder's attention
        keys when it attends. Starts a search: weights cast for an earlier one are dropped."""
        self._cast_cache.clear()
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

    def step(self, prev: Tensor, state: State, encoded: Encoded, vocab: Tensor | None = None) -> StepOutput:
        """One decoding step. prev: (N,) -> log-probabilities (N, V) in float32; with
        ``vocab`` (V',) target ids (a :mod:`seq2seq.data.shortlist`), (N, V') normalised over
        those ids only."""
        out = self.decoder.step(prev, state, encoded)
        log_probs = torch.log_softmax(self._step_logits(out.features, vocab).float(), dim=-1)
        return StepOutput(log_probs, out.state, out.attention)

    def _step_logits(self, features: Tensor, vocab: Tensor | None) -> Tensor:
        """:meth:`logits` (rows ``vocab`` only, if given); under search (no gradients), with
        the output projection's weights picked and cast once rather than at every step."""
        weight, bias = self.generator.weight, self.generator.bias
        dtype = product_dtype(features.device.type, weight.dtype)
        if torch.is_grad_enabled():
            if vocab is None:
                return self.logits(features)
            return F.linear(features, weight[vocab], None if bias is None else bias[vocab])
        if dtype == weight.dtype and vocab is None:
            return linear(features, weight, bias)
        params = [weight] if bias is None else [weight, bias]
        rows = slice(None) if vocab is None else vocab
        # The cache is cleared at encode, so each search picks its own list's rows once.
        key_params = params if vocab is None else [*params, vocab]
        w, *b = self._cast_cache.get(dtype, key_params, lambda: [p[rows] for p in params])
        return linear(features.to(dtype), w, b[0] if b else None)
