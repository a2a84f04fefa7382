"""Text in, text out: encode lines, search in length-sorted batches (in one process or
several forked workers), decode in input order."""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.pool
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from seq2seq.config import SearchConfig
from seq2seq.data.batching import make_source_batch
from seq2seq.data.shortlist import Shortlist
from seq2seq.data.subwords import Vocab
from seq2seq.errors import ConfigError
from seq2seq.runtime import resolve_precision
from seq2seq.search import Hypothesis, Searchable, beam_search, greedy_search
from seq2seq.source_limit import limit_source


def check_workers(workers: int, device: torch.device, key: str = "workers") -> None:
    """Decoding runs in one process, or in several forked ones on the CPU; raise
    :class:`ConfigError` naming ``key`` otherwise."""
    if workers < 1 or (workers > 1 and device.type != "cpu"):
        raise ConfigError(f"{key}: {workers}: must be 1, or more on the CPU only (device is {device.type})")


def check_shortlist(search: SearchConfig, shortlist: Shortlist | None, model: str = "this model") -> None:
    """``search.shortlist`` selects from the table a checkpoint carries: raise
    :class:`ConfigError` where ``model`` (its name in the message) has none."""
    if search.shortlist and shortlist is None:
        raise ConfigError(
            f"search.shortlist: {search.shortlist}, but {model} has no shortlist table (written before "
            "shortlists); add one with scripts/add_shortlist.py, or decode with shortlist 0"
        )


def search_batch(
    model: Searchable,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    search: SearchConfig,
    tgt_vocab: Vocab,
    attention: bool = False,
    vocab: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Greedy search for beam size 1, beam search otherwise; n-best lists per sentence, with
    attention weights if ``attention``; over the target ids ``vocab`` only, if given."""
    common = dict(
        vocab=vocab,
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
    shortlist: Shortlist | None = None,
    workers: int = 1,
) -> list[list[Hypothesis]]:
    """Decode encoded sentences in batches of similar length; results in input order.
    An empty source (no pieces) gives one empty hypothesis without running the model.
    ``attention``: keep each hypothesis' attention weights. ``shortlist``: the table that
    ``search.shortlist`` selects from. ``workers`` > 1: decode batches in that many forked
    processes (CPU only), the threads shared out among them."""
    check_shortlist(search, shortlist)
    check_workers(workers, device)
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0, token_log_probs=[0.0])] for _ in src_ids]
    order = sorted((i for i in range(len(src_ids)) if src_ids[i]), key=lambda i: -len(src_ids[i]))
    chunks = [order[start : start + search.batch_size] for start in range(0, len(order), search.batch_size)]
    batches = [[src_ids[i] for i in chunk] for chunk in chunks]
    search = replace(search, precision=resolve_precision(search.precision, device))  # auto, once
    decode = BatchDecoder(
        model, search, src_vocab, tgt_vocab, device, attention, shortlist if search.shortlist else None
    )
    outputs = _in_workers(decode, batches, workers) if workers > 1 and len(batches) > 1 else map(decode, batches)
    for chunk, hyps in zip(chunks, outputs):
        for i, h in zip(chunk, hyps):
            results[i] = h
    return results


@dataclass(frozen=True)
class BatchDecoder:
    """Search one batch of encoded sources: what a decoding worker runs."""

    model: Searchable
    search: SearchConfig
    src_vocab: Vocab
    tgt_vocab: Vocab
    device: torch.device
    attention: bool
    shortlist: Shortlist | None

    def __call__(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        src, lengths = make_source_batch(src_ids, self.src_vocab.pad_id, self.src_vocab.eos_id)
        src = src.to(self.device)
        vocab = None
        if self.shortlist is not None:
            always = [self.tgt_vocab.eos_id, self.tgt_vocab.unk_id]
            vocab = self.shortlist.candidates(src, self.search.shortlist, self.search.shortlist_frequent, always)
        # Scores and the softmax stay float32 (Seq2Seq.step); bf16 speeds up the matrix products.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.search.precision == "bf16"):
            return search_batch(self.model, src, lengths, self.search, self.tgt_vocab, self.attention, vocab)


# Each forked worker's decoder, set by _start_worker; the parent never sets it.
_worker_decode: BatchDecoder | None = None


def _start_worker(decode: BatchDecoder) -> None:
    global _worker_decode
    _worker_decode = decode


def forked_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[object, ...] = ()
) -> multiprocessing.pool.Pool:
    """``workers`` forked decoding processes of one thread each, then ``initializer(*initargs)``
    in each (for ``translate --workers`` and ``serve --workers``). Fork shares the loaded model
    copy-on-write, so workers start in milliseconds. One thread each: GNU OpenMP cannot start
    a thread team in a process forked from one that used it (the worker would hang)."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread, initargs=(initializer, initargs))


def _one_thread(initializer: Callable[..., None] | None, initargs: tuple[object, ...]) -> None:
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def _decode_in_worker(src_ids: list[list[int]]) -> list[list[Hypothesis]]:
    assert _worker_decode is not None, "called outside a decoding worker"
    return _worker_decode(src_ids)


def _in_workers(decode: BatchDecoder, batches: list[list[list[int]]], workers: int) -> Iterator[list[list[Hypothesis]]]:
    """``decode`` over ``batches`` in ``workers`` forked processes, results in order.

    A search step is many small operations, and one process with two threads keeps both
    cores busy only inside the larger matrix products; two processes of one thread each keep
    them busy throughout (``scripts/bench/benchmark.py --decode-workers`` measures it); see
    :func:`forked_pool`."""
    pool = forked_pool(workers, _start_worker, (decode,))
    with pool:
        yield from pool.imap(_decode_in_worker, batches)


def translate_stream(
    model: Searchable,
    lines: Iterable[str],
    search: SearchConfig,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    device: torch.device,
    chunk_lines: int = 10_000,
    attention: bool = False,
    shortlist: Shortlist | None = None,
    workers: int = 1,
) -> Iterator[tuple[list[int], list[tuple[str, Hypothesis]]]]:
    """Stream translations: for each input line, the source ids searched (after
    :func:`limit_source`) and its n-best (detokenized text, hypothesis) pairs, best first, in
    input order. An empty line gives one empty translation. Lines are read ``chunk_lines`` at
    a time, so inputs of any size work. ``attention``: keep each hypothesis' attention
    weights. ``shortlist``, ``workers``: as in :func:`translate_ids`."""
    it, first_line = iter(lines), 1
    while chunk := [line.strip() for line in itertools.islice(it, chunk_lines)]:
        src_ids = limit_source(src_vocab.encode(chunk), search, first_line)
        decoded = translate_ids(model, src_ids, search, src_vocab, tgt_vocab, device, attention, shortlist, workers)
        for ids, hyps in zip(src_ids, decoded):
            yield ids, list(zip(tgt_vocab.decode([h.tokens for h in hyps]), hyps))
        first_line += len(chunk)
