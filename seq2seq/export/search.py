"""Greedy and beam search in numpy: :mod:`seq2seq.search` step for step, over a model that
runs elsewhere (the exported graphs of :mod:`seq2seq.export.runtime`).

The same decisions in the same order as the torch search, so that on the same
log-probabilities both return the same hypotheses: the length limit a·|x| + b, min_length,
the 2K-candidate rule that keeps K beams alive, the length penalties, n-best lists and the
shortlist's column mapping. Arrays are batch first; a state or an encoding is a tuple of
arrays that :func:`select` reorders. Imports numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Arrays = tuple[np.ndarray, ...]


class StepModel(Protocol):
    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Arrays, Arrays]:
        """src (N, S) int64, src_lengths (N,) -> (encoding, the decoder's initial state)."""
        ...

    def step(
        self, prev: np.ndarray, state: Arrays, encoded: Arrays, vocab: np.ndarray | None
    ) -> tuple[np.ndarray, Arrays, np.ndarray | None]:
        """prev (N,) -> log-probabilities (N, V or V'), the next state, attention (N, S) or None."""
        ...


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # target ids, without BOS and EOS
    score: float  # log-probability after the length penalty
    log_prob: float  # total log-probability, EOS included
    attention: np.ndarray | None = None  # (len(tokens) + 1, S)
    token_log_probs: list[float] = field(default_factory=list)  # len(tokens) + 1, EOS's last


def select(items: Arrays, index: np.ndarray) -> Arrays:
    """Rows ``index`` of every array."""
    return tuple(x[index] for x in items)


def length_penalty(length: int, kind: str, alpha: float) -> float:
    """As :func:`seq2seq.search.length_penalty`: 1, the length, or Wu et al. (2016) Eq. 14."""
    penalties = {"none": lambda: 1.0, "average": lambda: float(length), "gnmt": lambda: ((5.0 + length) / 6.0) ** alpha}
    if kind not in penalties:
        raise ValueError(f"unknown length penalty {kind!r}; choose one of {', '.join(penalties)}")
    return penalties[kind]()


def max_lengths(src_lengths: np.ndarray, a: float, b: int) -> list[int]:
    return [int(a * n + b) for n in src_lengths.tolist()]


def _column(token: int, vocab: np.ndarray | None) -> int:
    if vocab is None:
        return token
    place = np.flatnonzero(vocab == token)
    if place.size != 1:
        raise ValueError(f"the search vocabulary must hold token {token} (EOS) once")
    return int(place[0])


def _constrain(log_probs: np.ndarray, t: int, min_length: int, limits: np.ndarray, eos: int) -> np.ndarray:
    """No EOS before ``min_length``; only EOS once a sentence reaches its length limit."""
    if t < min_length:
        log_probs = log_probs.copy()
        log_probs[:, eos] = -np.inf
    at_limit = limits <= t
    if at_limit.any():
        log_probs = log_probs.copy()
        log_probs[at_limit] = -np.inf
        log_probs[at_limit, eos] = 0.0
    return log_probs


def greedy_search(
    model: StepModel,
    src: np.ndarray,
    src_lengths: np.ndarray,
    *,
    bos: int,
    eos: int,
    max_length_a: float = 1.5,
    max_length_b: int = 10,
    min_length: int = 0,
    keep_attention: bool = True,
    vocab: np.ndarray | None = None,
) -> list[Hypothesis]:
    """The most probable piece at every step; see :func:`seq2seq.search.greedy_search`."""
    eos_col = _column(eos, vocab)
    n = src.shape[0]
    encoded, state = model.encode(src, src_lengths)
    limits = np.array(max_lengths(src_lengths, max_length_a, max_length_b))
    prev = np.full(n, bos, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    total = np.zeros(n, dtype=np.float32)
    tokens, attention, steps = [], [], []
    for t in range(int(limits.max()) + 1):
        log_probs, state, attn = model.step(prev, state, encoded, vocab)
        log_probs = _constrain(log_probs, t, min_length, limits, eos_col)
        prev = log_probs.argmax(axis=-1)
        best = log_probs[np.arange(n), prev]
        if vocab is not None:
            prev = vocab[prev]
        total += np.where(done, np.float32(0.0), best)
        tokens.append(prev)
        steps.append(best)
        if attn is not None and keep_attention:
            attention.append(attn)
        done |= prev == eos
        if done.all():
            break
    ids = np.stack(tokens, axis=1).tolist()
    step_log_probs = np.stack(steps, axis=1).tolist()
    attn_all = np.stack(attention, axis=1) if attention else None
    hyps = []
    for i in range(n):
        length = ids[i].index(eos) if eos in ids[i] else len(ids[i])
        weights = attn_all[i, : length + 1, : int(src_lengths[i])] if attn_all is not None else None
        score = float(total[i])
        hyps.append(Hypothesis(ids[i][:length], score, score, weights, step_log_probs[i][: length + 1]))
    return hyps


def _topk(x: np.ndarray, k: int, head: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k largest of each row of x (N, M), largest first (ties: the lower index first,
    but for those at the k-th place).

    ``head``: where the first ``head`` columns hold at least k finite values (a beam
    search's best beam), their k-th largest bounds the row's from below, and only the few
    entries at or above it are sorted: the rows of K beams over a vocabulary are long, and
    a selection over all of them costs more than the rest of a search step in numpy."""
    if not 0 < head < x.shape[1] or head < k:
        return _select(x, k)
    bound = -np.partition(-x[:, :head], k - 1, axis=1)[:, k - 1]
    fast = np.isfinite(bound)  # a row at its length limit has one finite entry: EOS's
    if not fast.all():
        values, ids = np.empty((len(x), k), dtype=x.dtype), np.empty((len(x), k), dtype=np.int64)
        values[fast], ids[fast] = _topk(x[fast], k, head)
        values[~fast], ids[~fast] = _select(x[~fast], k)
        return values, ids
    rows, cols = np.nonzero(x >= bound[:, None])
    vals = x[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    first = np.searchsorted(rows[order], np.arange(len(x)))  # every row keeps at least k entries
    pick = order[first[:, None] + np.arange(k)]
    return vals[pick], cols[pick].astype(np.int64)


def _select(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_topk` by a partial sort of every row (k <= M)."""
    part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(x, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(x, ids, axis=1), ids


def beam_search(
    model: StepModel,
    src: np.ndarray,
    src_lengths: np.ndarray,
    *,
    beam_size: int,
    bos: int,
    eos: int,
    n_best: int = 1,
    length_penalty_kind: str = "gnmt",
    alpha: float = 1.0,
    max_length_a: float = 1.5,
    max_length_b: int = 10,
    min_length: int = 0,
    keep_attention: bool = True,
    vocab: np.ndarray | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search, beams folded into the batch (rows ``i * K + k``); see
    :func:`seq2seq.search.beam_search`, whose steps this follows one for one."""
    n, k = src.shape[0], beam_size
    limits = max_lengths(src_lengths, max_length_a, max_length_b)
    encoded, state = model.encode(src, src_lengths)
    live = list(range(n))
    width = 1
    scores = np.zeros((n, 1), dtype=np.float32)
    history = np.empty((n, 0), dtype=np.int64)
    lp_history = np.empty((n, 0), dtype=np.float32)
    attn_history: np.ndarray | None = None
    prev = np.full(n, bos, dtype=np.int64)
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    eos_col = _column(eos, vocab)

    for t in range(max(limits) + 1):
        log_probs, new_state, attn = model.step(prev, state, encoded, vocab)
        live_limits = np.repeat(np.array([limits[s] for s in live]), width)
        log_probs = _constrain(log_probs, t, min_length, live_limits, eos_col)
        vocab_size = log_probs.shape[-1]
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(len(live), width * vocab_size)
        top_scores, top_ids = _topk(candidates, min(2 * k, width * vocab_size), head=vocab_size)
        origin, token = top_ids // vocab_size, top_ids % vocab_size
        step_lp = np.take_along_axis(log_probs.reshape(len(live), width * vocab_size), top_ids, axis=1)
        if vocab is not None:
            token = vocab[token]
        if attn is not None and keep_attention:
            step_attn = attn[:, None, :]
            attn_history = step_attn if attn_history is None else np.concatenate([attn_history, step_attn], 1)

        is_eos = token == eos
        ended = is_eos[:, :k] & np.isfinite(top_scores[:, :k])
        for i, j in zip(*np.nonzero(ended)):
            s, row = live[i], i * width + int(origin[i, j])
            if len(finished[s]) >= k:
                continue
            raw = float(top_scores[i, j])
            seq = history[row].tolist()
            weights = attn_history[row, :, : int(src_lengths[s])] if attn_history is not None else None
            penalty = length_penalty(len(seq) + 1, length_penalty_kind, alpha)
            pieces_lp = [*lp_history[row].tolist(), float(step_lp[i, j])]
            finished[s].append(Hypothesis(seq, raw / penalty, raw, weights, pieces_lp))

        keep = [i for i, s in enumerate(live) if len(finished[s]) < k and t < limits[s]]
        if not keep:
            break
        # The K best continuations that do not end here (EOS masked out), per live sentence.
        alive = np.where(is_eos, np.float32(-np.inf), top_scores)
        alive_scores, pick = _topk(alive, min(k, top_scores.shape[1]))
        keep_a = np.array(keep)
        pick, alive_scores = pick[keep_a], alive_scores[keep_a]
        origin = np.take_along_axis(origin[keep_a], pick, axis=1)
        token = np.take_along_axis(token[keep_a], pick, axis=1)
        rows = (keep_a[:, None] * width + origin).reshape(-1)
        history = np.concatenate([history[rows], token.reshape(-1, 1)], axis=1)
        kept_lp = np.take_along_axis(step_lp[keep_a], pick, axis=1).reshape(-1, 1)
        lp_history = np.concatenate([lp_history[rows], kept_lp], axis=1)
        if attn_history is not None:
            attn_history = attn_history[rows]
        state = select(new_state, rows)
        if len(keep) < len(live) or pick.shape[1] != width:
            encoded = select(encoded, np.repeat(keep_a * width, pick.shape[1]))
        scores, prev, live, width = alive_scores, token.reshape(-1), [live[i] for i in keep], pick.shape[1]

    empty = Hypothesis([], -math.inf, -math.inf, token_log_probs=[-math.inf])
    return [sorted(hyps, key=lambda h: -h.score)[:n_best] or [empty] for hyps in finished]
