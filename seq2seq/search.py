"""Greedy and beam search: plain functions over tensors, ids and scores out, never strings.

Search sees the model only through ``encode``, ``init_state`` and ``step`` (see
:class:`seq2seq.models.seq2seq.Seq2Seq`). States and encoder outputs are tuples of
batch-first tensors, so one :func:`select` reorders any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from seq2seq.config import check_n_best
from seq2seq.models.seq2seq import StepOutput

T = TypeVar("T", bound=tuple[Any, ...])


class Searchable(Protocol):
    """A model (:class:`seq2seq.models.seq2seq.Seq2Seq`) or an ensemble
    (:class:`seq2seq.ensemble.Ensemble`). Search treats the encoded source and the state as
    opaque (nested) tuples of batch-first tensors."""

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any: ...
    def init_state(self, encoded: Any) -> Any: ...
    def step(self, prev: Tensor, state: Any, encoded: Any, vocab: Tensor | None = None) -> StepOutput: ...


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # target ids, without BOS and EOS
    score: float  # log-probability after the length penalty (what ranks hypotheses)
    log_prob: float  # total log-probability, EOS included
    attention: Tensor | None = None  # (len(tokens) + 1, S) where the model attends
    # len(tokens) + 1 (EOS's last): each step's log-probability, summing to log_prob; a piece
    # the length limit forces (EOS) counts 0, as in log_prob
    token_log_probs: list[float] = field(default_factory=list)


def select(items: T, index: Tensor) -> T:
    """Pick rows ``index`` along the batch dimension of every tensor in a (named, nested)
    tuple; other items (None) stay as they are."""
    picked = [
        x.index_select(0, index) if isinstance(x, Tensor) else select(x, index) if isinstance(x, tuple) else x
        for x in items
    ]
    return type(items)(*picked) if hasattr(items, "_fields") else type(items)(picked)


def length_penalty(length: int, kind: str, alpha: float) -> float:
    """Divisor of a hypothesis' log-probability: 1 (``none``), its length (``average``), or
    Wu et al. (2016) Eq. 14, ((5 + |Y|) / 6) ** alpha (``gnmt``)."""
    if kind == "none":
        return 1.0
    if kind == "average":
        return float(length)
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    raise ValueError(f"unknown length penalty {kind!r}; choose one of none, average, gnmt")


def max_lengths(src_lengths: Tensor, a: float, b: int) -> list[int]:
    """Longest output (pieces before EOS) per sentence: a * source length + b."""
    return [int(a * n + b) for n in src_lengths.tolist()]


@torch.no_grad()
def greedy_search(
    model: Searchable,
    src: Tensor,
    src_lengths: Tensor,
    *,
    bos: int,
    eos: int,
    max_length_a: float = 1.5,
    max_length_b: int = 10,
    min_length: int = 0,
    keep_attention: bool = True,
    vocab: Tensor | None = None,
) -> list[Hypothesis]:
    """Pick the most probable piece at every step. src: (N, S) -> N hypotheses, with their
    attention weights where the model attends and ``keep_attention``. ``vocab``: (V',)
    sorted target ids to choose from (a :mod:`seq2seq.data.shortlist`; EOS among them)."""
    eos_col = _column(eos, vocab)
    n = src.size(0)
    encoded = model.encode(src, src_lengths)
    state = model.init_state(encoded)
    limits = torch.tensor(max_lengths(src_lengths, max_length_a, max_length_b), device=src.device)
    prev = torch.full((n,), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    total = torch.zeros(n, device=src.device)
    tokens, attention, steps = [], [], []
    for t in range(int(limits.max()) + 1):
        out = model.step(prev, state, encoded, vocab)
        log_probs = _constrain(out.log_probs, t, min_length, limits, eos_col)
        best, prev = log_probs.max(dim=-1)
        if vocab is not None:
            prev = vocab[prev]
        total += best.masked_fill(done, 0.0)
        tokens.append(prev)
        steps.append(best)
        if out.attention is not None and keep_attention:
            attention.append(out.attention)
        done |= prev == eos
        state = out.state
        if bool(done.all()):
            break
    ids = torch.stack(tokens, dim=1).tolist()
    step_log_probs = torch.stack(steps, dim=1).tolist()
    attn = torch.stack(attention, dim=1) if attention else None
    hyps = []
    for i in range(n):
        length = ids[i].index(eos) if eos in ids[i] else len(ids[i])
        weights = attn[i, : length + 1, : int(src_lengths[i])] if attn is not None else None
        score = float(total[i])
        hyps.append(Hypothesis(ids[i][:length], score, score, weights, step_log_probs[i][: length + 1]))
    return hyps


def _column(token: int, vocab: Tensor | None) -> int:
    """Where ``token`` sits in the step's log-probabilities: its id, or its place in ``vocab``."""
    if vocab is None:
        return token
    place = (vocab == token).nonzero()
    if place.numel() != 1:
        raise ValueError(f"the search vocabulary must hold token {token} (EOS) once")
    return int(place)


def _constrain(log_probs: Tensor, t: int, min_length: int, limits: Tensor, eos: int) -> Tensor:
    """No EOS before ``min_length``; only EOS once a sentence reaches its length limit."""
    if t < min_length:
        log_probs = log_probs.clone()
        log_probs[:, eos] = -math.inf
    at_limit = limits <= t
    if bool(at_limit.any()):
        forced = torch.full_like(log_probs, -math.inf)
        forced[:, eos] = 0.0
        log_probs = torch.where(at_limit[:, None], forced, log_probs)
    return log_probs


@torch.no_grad()
def beam_search(
    model: Searchable,
    src: Tensor,
    src_lengths: Tensor,
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
    vocab: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search, beams folded into the batch (rows ``i * K + k``; the first step
    runs one row per sentence, since its K beams would be identical).

    At each step every live sentence takes its 2K best continuations: those ending in EOS
    among the first K become finished hypotheses, and the K best others live on, so K beams
    stay alive. A sentence leaves the batch once it has K finished hypotheses, and every
    sentence finishes at its length limit. Returns the ``n_best`` hypotheses per sentence,
    best first by length-penalised score, with their attention weights where the model
    attends and ``keep_attention`` (keeping them costs a copy of the history every step).
    ``vocab``: (V',) sorted target ids to choose from (a :mod:`seq2seq.data.shortlist`; EOS
    among them).
    """
    check_n_best(n_best, beam_size)
    n, k, device = src.size(0), beam_size, src.device
    limits = max_lengths(src_lengths, max_length_a, max_length_b)
    encoded = model.encode(src, src_lengths)
    state = model.init_state(encoded)

    # Rows i * width + b: beam b of live sentence i. The first step runs one row per
    # sentence (its K beams would be identical), then each keeps its K best continuations.
    live = list(range(n))  # sentence of each live batch entry
    width = 1
    scores = torch.zeros(n, 1, device=device)
    history = torch.empty(n, 0, dtype=torch.long, device=device)
    lp_history = torch.empty(n, 0, device=device)  # each piece's log-probability, as history
    attn_history: Tensor | None = None
    prev = torch.full((n,), bos, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    eos_col = _column(eos, vocab)

    for t in range(max(limits) + 1):
        out = model.step(prev, state, encoded, vocab)
        live_limits = torch.tensor([limits[s] for s in live], device=device).repeat_interleave(width)
        log_probs = _constrain(out.log_probs, t, min_length, live_limits, eos_col)
        vocab_size = log_probs.size(-1)
        candidates = (scores.view(-1, 1) + log_probs).view(len(live), width * vocab_size)
        top_scores, top_ids = candidates.topk(min(2 * k, width * vocab_size), dim=1)
        origin, token = top_ids // vocab_size, top_ids % vocab_size  # beam within the sentence, piece
        step_lp = log_probs.view(len(live), width * vocab_size).gather(1, top_ids)  # the pieces' own
        if vocab is not None:
            token = vocab[token]
        if out.attention is not None and keep_attention:
            step_attn = out.attention[:, None, :]
            attn_history = step_attn if attn_history is None else torch.cat([attn_history, step_attn], 1)

        is_eos = token == eos
        ended = is_eos[:, :k] & torch.isfinite(top_scores[:, :k])
        for i, j in ended.nonzero().tolist():
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
        alive_scores, pick = top_scores.masked_fill(is_eos, -math.inf).topk(min(k, top_scores.size(1)), dim=1)
        keep_t = torch.tensor(keep, device=device)
        pick, alive_scores = pick[keep_t], alive_scores[keep_t]
        origin, token = origin[keep_t].gather(1, pick), token[keep_t].gather(1, pick)
        rows = (keep_t[:, None] * width + origin).view(-1)
        history = torch.cat([history.index_select(0, rows), token.view(-1, 1)], dim=1)
        kept_lp = step_lp[keep_t].gather(1, pick).view(-1, 1)
        lp_history = torch.cat([lp_history.index_select(0, rows), kept_lp], dim=1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, rows)
        state = select(out.state, rows)
        if len(keep) < len(live) or pick.size(1) != width:
            # Every row of a sentence holds the same encoding: reorder on exits and growth only.
            encoded = select(encoded, (keep_t * width).repeat_interleave(pick.size(1)))
        scores, prev, live, width = alive_scores, token.view(-1), [live[i] for i in keep], pick.size(1)

    empty = Hypothesis([], -math.inf, -math.inf, token_log_probs=[-math.inf])  # every beam scored -inf
    return [sorted(hyps, key=lambda h: -h.score)[:n_best] or [empty] for hyps in finished]


def forced_log_probs(model: Any, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor, pad: int) -> Tensor:
    """Force-decode given targets: each target piece's log-probability, (N, T), 0 on padding
    (EOS included). tgt_in / tgt_out: (N, T) as in :class:`seq2seq.data.batching.Batch`."""
    with torch.no_grad():
        log_probs = torch.log_softmax(model.logits(model(src, src_lengths, tgt_in)).float(), dim=-1)
    picked = log_probs.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(tgt_out == pad, 0.0)
