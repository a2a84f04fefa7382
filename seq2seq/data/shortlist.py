"""Vocabulary selection for search: decode each batch over the target pieces its source
makes likely, not over the whole vocabulary.

In a beam search step of the reference model the output projection onto 8,000 pieces and
the softmax, top-k and score arithmetic over them take a large part of the time. Following
Jean et al. (2015, §3.2, "candidate list") and L'Hostis et al. (2016), a batch's candidates
are the most frequent target pieces plus, for every piece of its sources, the target pieces
that co-occur with it most strongly in the training pairs. The softmax is then normalised
over the candidates only, so scores are not the full model's and a translation may differ
where the full vocabulary would have chosen a piece outside the list (docs/benchmarks.md has
the BLEU and speed it buys). ``search.shortlist: 0`` decodes over the full vocabulary.

Strength is c(s, t)² / (c(s) c(t)) over sentence co-occurrence counts, the product of the
two conditional probabilities P(t | s) P(s | t): P(t | s) alone ranks the frequent target
pieces first for every source piece, and those are in the list anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seq2seq.config import SHORTLIST_FREQUENT_MAX, SHORTLIST_MAX
from seq2seq.data.batching import ParallelData

log = logging.getLogger(__name__)

KEEP = SHORTLIST_MAX  # translations kept per source piece (the most search.shortlist can ask for)
KEEP_FREQUENT = SHORTLIST_FREQUENT_MAX  # frequent target pieces kept
MAX_PAIRS = 100_000  # pairs counted, evenly spaced over larger corpora
_CHUNK = 10_000


@dataclass(frozen=True)
class Shortlist:
    frequent: Tensor  # (F,) int32 target ids, most frequent first
    translations: Tensor  # (V_src, K) int32 target ids per source id, strongest first; -1 pads

    def candidates(self, src: Tensor, per_source: int, frequent: int, always: Sequence[int]) -> Tensor:
        """src: (N, S) source ids -> (V',) sorted distinct int64 target ids: the ``frequent``
        most frequent, the ``per_source`` strongest of every source piece, and ``always``
        (EOS at least). Pieces never seen in training (padding, EOS) add nothing."""
        rows = self.translations[src.unique().cpu(), :per_source].reshape(-1)
        always_t = torch.tensor(list(always), dtype=rows.dtype)
        ids = torch.cat([self.frequent[:frequent], rows[rows >= 0], always_t])
        return ids.unique().long().to(src.device)

    def to_data(self) -> dict[str, Tensor]:
        return {"frequent": self.frequent, "translations": self.translations}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Shortlist:
        return cls(data["frequent"], data["translations"])


def build_shortlist(
    pairs: ParallelData, src_vocab_size: int, tgt_vocab_size: int, max_pairs: int = MAX_PAIRS
) -> Shortlist:
    """Count which source and target pieces share a sentence pair (each at most once per
    pair) over at most ``max_pairs`` pairs, and keep each source piece's :data:`KEEP`
    strongest target pieces and the :data:`KEEP_FREQUENT` most frequent ones."""
    n = len(pairs)
    rows = np.linspace(0, n - 1, max_pairs).astype(np.int64) if n > max_pairs else np.arange(n)
    src_count = np.zeros(src_vocab_size, dtype=np.int64)
    tgt_count = np.zeros(tgt_vocab_size, dtype=np.int64)
    # Pair keys s * V_tgt + t, counted a chunk of sentence pairs at a time so that memory
    # holds the distinct keys, not every co-occurrence (about 200 per pair).
    totals: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(rows), _CHUNK):
        keys = []
        for i in rows[start : start + _CHUNK]:
            s = np.unique(pairs.src_ids(int(i))).astype(np.int64)
            t = np.unique(pairs.tgt_ids(int(i))).astype(np.int64)
            src_count[s] += 1
            tgt_count[t] += 1
            keys.append((s[:, None] * tgt_vocab_size + t[None, :]).ravel())
        totals.append(np.unique(np.concatenate(keys), return_counts=True))
    key, where = np.unique(np.concatenate([k for k, _ in totals] or [np.zeros(0, np.int64)]), return_inverse=True)
    count = np.bincount(where, weights=np.concatenate([c for _, c in totals] or [np.zeros(0)]), minlength=len(key))
    s, t = key // tgt_vocab_size, key % tgt_vocab_size
    strength = count.astype(np.float64) ** 2 / (src_count[s] * tgt_count[t])
    order = np.lexsort((t, -strength, s))  # by source piece, strongest first, ties by id
    s, t = s[order], t[order]
    rank = np.arange(len(s)) - np.searchsorted(s, s)  # position within the source piece's run
    kept = rank < KEEP
    translations = np.full((src_vocab_size, KEEP), -1, dtype=np.int32)
    translations[s[kept], rank[kept]] = t[kept]
    seen = np.flatnonzero(tgt_count)
    frequent = seen[np.argsort(-tgt_count[seen], kind="stable")][:KEEP_FREQUENT].astype(np.int32)
    log.info("shortlist: %d source pieces from %d pairs", int((translations[:, 0] >= 0).sum()), len(rows))
    return Shortlist(torch.from_numpy(frequent), torch.from_numpy(translations))
