"""Force-decoding scores of given sentence or phrase pairs, as Cho et al. (2014, Sec. 4.1)
scored the pairs of a phrase table with their RNN Encoder–Decoder.

Input lines are ``source<TAB>target[<TAB>more columns]`` (``tsv``) or Moses phrase-table
lines ``source ||| target ||| f1 f2 ... [||| more fields]`` (``moses``). Each output line is
its input line with log p(target | source) (natural log, EOS included) and that divided by
the number of target pieces + 1 (per token) added: two more columns for ``tsv``, two more
features at the end of the scores field for ``moses``. Lines keep their order and count;
pairs are scored in length-sorted batches, ``chunk_lines`` lines at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from seq2seq.data.batching import ParallelData, make_batch
from seq2seq.data.subwords import Vocab
from seq2seq.errors import DataError
from seq2seq.outputs import PairScore
from seq2seq.search import forced_log_probs

MOSES_SEP = " ||| "
FORMATS = ("auto", "tsv", "moses")


def split_pair(line: str, fmt: str, where: str) -> list[str]:
    """The fields of one line; fields[0] is the source and fields[1] the target.
    ``where`` (``file:line``) names the line in errors."""
    if fmt == "moses":
        fields = line.split(MOSES_SEP)
        if len(fields) < 2:
            raise DataError(f"{where}: expected 'source ||| target ||| scores ...', found no ' ||| '")
        return [f.strip() for f in fields[:2]] + fields[2:]
    if fmt == "tsv":
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{where}: expected 'source<TAB>target', found no tab")
        return fields
    raise ValueError(f"unknown pair format {fmt!r}; choose one of {', '.join(FORMATS)}")


def join_scored(fields: list[str], fmt: str, total: float, per_token: float) -> str:
    """The input line's fields with the two scores added (see the module docstring)."""
    scores = f"{total:.6f} {per_token:.6f}"
    if fmt == "tsv":
        return "\t".join([*fields, *scores.split()])
    if len(fields) == 2:  # a Moses line without a scores field gets one
        fields = [*fields, scores]
    else:
        fields = [*fields[:2], f"{fields[2].strip()} {scores}".strip(), *fields[3:]]
    return MOSES_SEP.join(fields)


def pair_token_log_probs(
    model: torch.nn.Module,
    src_ids: Sequence[list[int]],
    tgt_ids: Sequence[list[int]],
    tgt_vocab: Vocab,
    device: torch.device,
    batch_size: int = 64,
) -> list[tuple[float, list[float]]]:
    """log p(target + EOS | source) of each pair, teacher forced, in length-sorted batches,
    in input order, with each target piece's log-probability: per pair, the total and the
    len(target) + 1 terms it sums (EOS's last). A batch gives each pair what it gives alone
    (padding is masked)."""
    data = ParallelData(*_flat(src_ids), *_flat(tgt_ids))
    order = np.lexsort((data.tgt_lengths, data.src_lengths))[::-1]
    scores: list[tuple[float, list[float]]] = [(0.0, [])] * len(src_ids)
    pad = tgt_vocab.pad_id
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = make_batch(data, chunk, pad, tgt_vocab.bos_id, tgt_vocab.eos_id).to(device)
        terms = forced_log_probs(model, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, pad)
        totals = terms.sum(dim=1).tolist()
        for row, (i, total) in enumerate(zip(chunk.tolist(), totals)):
            scores[i] = (total, terms[row, : len(tgt_ids[i]) + 1].tolist())
    return scores


def _flat(ids: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in ids], out=offsets[1:])
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1])), offsets


def score_lines(
    score: Callable[[list[tuple[str, str]]], list[PairScore]],
    lines: Iterable[str],
    fmt: str = "auto",
    name: str = "<stdin>",
    chunk_lines: int = 10_000,
) -> Iterator[str]:
    """Stream scored lines (without newlines), one per input line, in input order; ``score``
    force-decodes a list of (source, target) pairs (:meth:`seq2seq.api.Translator.score`).
    ``auto`` reads the format from the first line: ``moses`` if it holds ' ||| ', else
    ``tsv``. Lines are read ``chunk_lines`` at a time, so inputs of any size work."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown pair format {fmt!r}; choose one of {', '.join(FORMATS)}")
    it, first_line = iter(lines), 1
    while chunk := list(itertools.islice(it, chunk_lines)):
        if fmt == "auto":
            fmt = "moses" if MOSES_SEP in chunk[0] else "tsv"
        fields = [split_pair(line, fmt, f"{name}:{first_line + i}") for i, line in enumerate(chunk)]
        for f, scored in zip(fields, score([(f[0], f[1]) for f in fields])):
            yield join_scored(f, fmt, scored.log_prob, scored.log_prob / len(scored.token_log_probs))
        first_line += len(chunk)
