"""Text in, text out: encode lines, search in length-sorted batches, decode in input order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from seq2seq.config import SearchConfig
from seq2seq.data.batching import make_source_batch
from seq2seq.data.subwords import Vocab
from seq2seq.search import Hypothesis, Searchable, beam_search, greedy_search


def search_batch(
    model: Searchable,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    search: SearchConfig,
    tgt_vocab: Vocab,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Greedy search for beam size 1, beam search otherwise; n-best lists per sentence, with
    attention weights if ``attention``."""
    common = dict(
        keep_attention=attention,
        bos=tgt_vocab.bos_id,
        eos=tgt_vocab.eos_id,
        max_length_a=search.max_length_a,
        max_length_b=search.max_length_b,
        min_length=search.min_length,
    )
    if search.beam_size == 1:
        return [[h] for h in greedy_search(model, src, src_lengths, **common)]  # type: ignore[arg-type]
    return beam_search(
        model,
        src,
        src_lengths,
        beam_size=search.beam_size,
        n_best=search.n_best,
        length_penalty_kind=search.length_penalty,
        alpha=search.alpha,
        **common,  # type: ignore[arg-type]
    )


def translate_ids(
    model: Searchable,
    src_ids: Sequence[list[int]],
    search: SearchConfig,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    device: torch.device,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Decode encoded sentences in batches of similar length; results in input order.
    An empty source (no pieces) gives one empty hypothesis without running the model.
    ``attention``: keep each hypothesis' attention weights."""
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in src_ids]
    order = sorted((i for i in range(len(src_ids)) if src_ids[i]), key=lambda i: -len(src_ids[i]))
    for start in range(0, len(order), search.batch_size):
        chunk = order[start : start + search.batch_size]
        src, lengths = make_source_batch([src_ids[i] for i in chunk], src_vocab.pad_id, src_vocab.eos_id)
        # Scores and the softmax stay float32 (Seq2Seq.step); bf16 speeds up the matrix products.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=search.precision == "bf16"):
            hyps = search_batch(model, src.to(device), lengths, search, tgt_vocab, attention)
        for i, h in zip(chunk, hyps):
            results[i] = h
    return results


def translate_lines(
    model: Searchable,
    lines: Iterable[str],
    search: SearchConfig,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    device: torch.device,
    chunk_lines: int = 10_000,
    attention: bool = False,
) -> Iterator[list[tuple[str, Hypothesis]]]:
    """Stream translations: for each input line, its n-best (detokenized text, hypothesis)
    pairs, best first, in input order. An empty line gives one empty translation.
    Lines are read ``chunk_lines`` at a time, so files of any size work. ``attention``: keep
    each hypothesis' attention weights."""
    it = iter(lines)
    while chunk := [line.rstrip("\r\n") for line in itertools.islice(it, chunk_lines)]:
        src_ids = src_vocab.encode([line.strip() for line in chunk])
        for hyps in translate_ids(model, src_ids, search, src_vocab, tgt_vocab, device, attention):
            yield list(zip(tgt_vocab.decode([h.tokens for h in hyps]), hyps))


def attention_record(line: int, source: str, hyp: Hypothesis, src_vocab: Vocab, tgt_vocab: Vocab) -> dict[str, Any]:
    """What ``translate --attention-dir`` writes and ``scripts/plot_attention.py`` draws:
    source and target pieces (EOS included) and the weights, one row per target piece."""
    assert hyp.attention is not None
    src_pieces = [*src_vocab.pieces(src_vocab.encode([source.strip()])[0]), "</s>"]
    tgt_pieces = [*tgt_vocab.pieces(hyp.tokens), "</s>"]
    assert hyp.attention.shape == (len(tgt_pieces), len(src_pieces))
    weights = [[round(w, 5) for w in row] for row in hyp.attention.float().tolist()]
    return {"line": line, "source": src_pieces, "target": tgt_pieces, "weights": weights}
