"""Ensembles of independently trained models, decoded as one (``translate --checkpoint a b``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from seq2seq.models.seq2seq import Seq2Seq, StepOutput


class Ensemble:
    """Several models over the same vocabularies, searched together. Each step's
    distribution is the mean of the models' probabilities,
    log p(y) = logsumexp_m log p_m(y) − log M, as in fairseq; the attention, where the models
    have it, is their mean. The encoded source and the state are tuples with one entry per
    model, so :func:`seq2seq.search.select` reorders them like a single model's.
    """

    def __init__(self, models: Sequence[Seq2Seq]) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Any, ...]:
        return tuple(m.encode(src, src_lengths) for m in self.models)

    def init_state(self, encoded: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(m.init_state(e) for m, e in zip(self.models, encoded))

    def step(
        self, prev: Tensor, state: tuple[Any, ...], encoded: tuple[Any, ...], vocab: Tensor | None = None
    ) -> StepOutput:
        """prev: (N,) -> mean log-probabilities (N, V) (over ``vocab`` if given, as in
        :meth:`Seq2Seq.step`), per-model states, mean attention (N, S)."""
        outs = [m.step(prev, s, e, vocab) for m, s, e in zip(self.models, state, encoded)]
        log_probs = torch.logsumexp(torch.stack([o.log_probs for o in outs]), dim=0) - math.log(len(outs))
        weights = [o.attention for o in outs if o.attention is not None]
        attention = torch.stack(weights).mean(dim=0) if weights else None
        return StepOutput(log_probs, tuple(o.state for o in outs), attention)
