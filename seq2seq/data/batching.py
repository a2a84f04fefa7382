"""Encoded pairs as flat numpy arrays, length filtering, token-bounded batch plans and
padded tensors.

Pairs live as two concatenated id arrays with offsets (no Python object per sentence),
so planning and filtering millions of pairs is a handful of vectorised numpy calls.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from seq2seq.data.arrow import column_chunks
from seq2seq.errors import DataError

if TYPE_CHECKING:  # datasets loads only where a corpus is read, not to translate
    import datasets

logger = logging.getLogger(__name__)

_ID_COLUMNS = ["src_ids", "tgt_ids"]


@dataclass
class ParallelData:
    """Encoded pairs held as numpy arrays: ids concatenated, offsets mark sentence boundaries.

    Pair ``i`` has source ids ``src[src_offsets[i]:src_offsets[i + 1]]``, likewise target."""

    src: np.ndarray  # uint16 (vocabularies under 65,536 pieces) or int32, all source ids concatenated
    src_offsets: np.ndarray  # int64, shape (n+1,)
    tgt: np.ndarray  # like src, all target ids concatenated
    tgt_offsets: np.ndarray  # int64, shape (n+1,)

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        """(n,) int64 pieces per source sentence."""
        return np.diff(self.src_offsets).astype(np.int64, copy=False)

    @property
    def tgt_lengths(self) -> np.ndarray:
        """(n,) int64 pieces per target sentence."""
        return np.diff(self.tgt_offsets).astype(np.int64, copy=False)

    def src_ids(self, i: int) -> np.ndarray:
        return self.src[self.src_offsets[i] : self.src_offsets[i + 1]]

    def tgt_ids(self, i: int) -> np.ndarray:
        return self.tgt[self.tgt_offsets[i] : self.tgt_offsets[i + 1]]

    def select(self, indices: np.ndarray) -> ParallelData:
        """The pairs ``indices`` (int array), in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        src, src_offsets = _gather(self.src, self.src_offsets, idx)
        tgt, tgt_offsets = _gather(self.tgt, self.tgt_offsets, idx)
        return ParallelData(src, src_offsets, tgt, tgt_offsets)


def _gather(flat: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids and offsets of the rows ``idx``, without a loop over rows."""
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    new_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    # Position k of the output comes from starts[row] + (k - new_offsets[row]).
    shift = np.repeat(starts - new_offsets[:-1], lengths)
    positions = np.arange(new_offsets[-1], dtype=np.int64) + shift
    return flat[positions], new_offsets


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def to_parallel_data(ds: datasets.Dataset, vocab_size: int = 2**31) -> ParallelData:
    """Read the ``src_ids`` / ``tgt_ids`` columns in Arrow chunks (:mod:`seq2seq.data.arrow`)
    into a ParallelData, ids as uint16 when ``vocab_size`` allows (half the memory of int32
    for millions of pairs).

    Two passes over the columns: lengths first, then the ids straight into arrays of their
    final size, so peak memory is the result plus one chunk."""
    parts: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    for chunk in column_chunks(ds, _ID_COLUMNS):
        for side in ("src", "tgt"):
            # value_lengths() (and flatten() below) respect slicing, unlike .offsets / .values.
            lengths = chunk[f"{side}_ids"].value_lengths().fill_null(0)
            parts[side].append(lengths.to_numpy().astype(np.int64))
    offsets = {side: _offsets(np.concatenate(parts[side]) if parts[side] else np.zeros(0, np.int64)) for side in parts}
    dtype = np.uint16 if vocab_size <= 2**16 else np.int32
    flat = {side: np.empty(int(offsets[side][-1]), dtype=dtype) for side in parts}
    done = {"src": 0, "tgt": 0}
    for chunk in column_chunks(ds, _ID_COLUMNS):
        for side in ("src", "tgt"):
            values = chunk[f"{side}_ids"].flatten().to_numpy(zero_copy_only=False)
            flat[side][done[side] : done[side] + len(values)] = values
            done[side] += len(values)
    assert done["src"] == len(flat["src"]) and done["tgt"] == len(flat["tgt"])
    return ParallelData(flat["src"], offsets["src"], flat["tgt"], offsets["tgt"])


def filter_pairs(data: ParallelData, max_length: int, name: str) -> ParallelData:
    """Drop pairs with an empty side or a side longer than ``max_length`` pieces."""
    src_len, tgt_len = data.src_lengths, data.tgt_lengths
    empty = (src_len == 0) | (tgt_len == 0)
    too_long = ~empty & ((src_len > max_length) | (tgt_len > max_length))
    keep = np.flatnonzero(~(empty | too_long))
    summary = (
        f"kept {len(keep)} of {len(data)} pairs; dropped {int(empty.sum())} empty, "
        f"{int(too_long.sum())} longer than {max_length} pieces"
    )
    logger.info("%s: %s", name, summary)
    if len(keep) == 0:
        raise DataError(f"{name}: no sentence pairs left ({summary}); check the corpus files or raise data.max_length")
    return data if len(keep) == len(data) else data.select(keep)


def plan_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    batch_tokens: int,
    batch_sentences: int = 0,
    seed: int | None = None,
) -> list[np.ndarray]:
    """Split pair indices into length-bucketed batches; int64 index arrays, each index once.

    Pairs are sorted by (source length, target length), ties broken at random when
    ``seed`` is given, and consecutive runs are cut into batches: ``batch_sentences``
    pairs each if > 0, otherwise as many as keep ``count * max(src_len + 1, tgt_len + 1)``
    (padded tokens, +1 for EOS/BOS) within ``batch_tokens``; a single pair over the limit
    is a batch of its own. With ``seed`` the batch order is shuffled; without, it stays
    sorted so evaluation is deterministic."""
    src = np.asarray(src_lengths, dtype=np.int64)
    tgt = np.asarray(tgt_lengths, dtype=np.int64)
    rng = np.random.default_rng(seed) if seed is not None else None
    # One integer key per pair; with lengths up to 255 it fits 16 bits, where numpy's
    # stable sort is a radix sort (much faster than lexsort on millions of pairs).
    key = src * (int(tgt.max(initial=0)) + 1) + tgt
    max_key = int(key.max(initial=0))
    key = key.astype(np.uint16 if max_key < 2**16 else np.uint32 if max_key < 2**32 else np.int64)
    if rng is not None:
        # The sort is stable, so sorting a random permutation breaks ties at random.
        perm = rng.permutation(len(src))
        order = perm[np.argsort(key[perm], kind="stable")]
    else:
        order = np.argsort(key, kind="stable")
    order = order.astype(np.int64, copy=False)
    if batch_sentences > 0:
        bounds = [*range(0, len(order), batch_sentences), len(order)]
    else:
        bounds = _token_bounds(np.maximum(src, tgt)[order] + 1, batch_tokens)
    batches = [order[a:b] for a, b in itertools.pairwise(bounds)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _token_bounds(widths: np.ndarray, batch_tokens: int) -> list[int]:
    """Greedy cut points over ``widths`` (padded length per pair, in batch order)."""
    bounds, start, n = [0], 0, len(widths)
    while start < n:
        # A batch can hold at most batch_tokens // widths[start] pairs, since its widest
        # pair is at least that wide; only that window needs looking at.
        window = widths[start : start + max(batch_tokens // int(widths[start]), 1)]
        counts = np.arange(1, len(window) + 1)
        fits = counts * np.maximum.accumulate(window) <= batch_tokens  # True, then False
        size = max(int(np.count_nonzero(fits)), 1)
        start += size
        bounds.append(start)
    return bounds


@dataclass
class Batch:
    """Padded tensors for one training or validation step."""

    src: torch.Tensor  # (N, S) long, source ids + EOS, right-padded with pad_id
    src_lengths: torch.Tensor  # (N,) long, including the EOS
    tgt_in: torch.Tensor  # (N, T) long: BOS + target ids, padded
    tgt_out: torch.Tensor  # (N, T) long: target ids + EOS, padded
    num_tokens: int  # real source + target pieces, no pad, no BOS/EOS

    @property
    def size(self) -> int:
        return int(self.src.shape[0])

    def to(self, device: torch.device) -> Batch:
        """Copy to ``device``, non-blocking (overlaps with compute when the host side is pinned)."""
        return Batch(
            src=self.src.to(device, non_blocking=True),
            src_lengths=self.src_lengths.to(device, non_blocking=True),
            tgt_in=self.tgt_in.to(device, non_blocking=True),
            tgt_out=self.tgt_out.to(device, non_blocking=True),
            num_tokens=self.num_tokens,
        )


def _padded(
    flat: np.ndarray, offsets: np.ndarray, idx: np.ndarray, pad_id: int, eos_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, W) int64 rows ``idx`` left-aligned, then EOS if given, then pad; and (N,) lengths
    without the EOS. W is the longest row (+1 for EOS)."""
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    width = int(lengths.max(initial=0)) + (eos_id is not None)
    cols = np.arange(width, dtype=np.int64)
    mask = cols < lengths[:, None]
    out = np.full((len(idx), width), pad_id, dtype=np.int64)
    out[mask] = flat[(starts[:, None] + cols)[mask]]
    if eos_id is not None:
        out[np.arange(len(idx)), lengths] = eos_id
    return out, lengths


def make_batch(data: ParallelData, indices: np.ndarray, pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Pad the pairs ``indices``: source + EOS; target as BOS + ids (input) and ids + EOS
    (output), both (N, max target length + 1)."""
    idx = np.asarray(indices, dtype=np.int64)
    src, src_len = _padded(data.src, data.src_offsets, idx, pad_id, eos_id)
    tgt_out, tgt_len = _padded(data.tgt, data.tgt_offsets, idx, pad_id, eos_id)
    tgt_ids, _ = _padded(data.tgt, data.tgt_offsets, idx, pad_id, None)
    tgt_in = np.concatenate([np.full((len(idx), 1), bos_id, dtype=np.int64), tgt_ids], axis=1)
    return Batch(
        src=torch.from_numpy(src),
        src_lengths=torch.from_numpy(src_len + 1),
        tgt_in=torch.from_numpy(tgt_in),
        tgt_out=torch.from_numpy(tgt_out),
        num_tokens=int(src_len.sum() + tgt_len.sum()),
    )


def make_source_batch(src_ids: list[list[int]], pad_id: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(src (N, S) long: ids + EOS, right-padded; src_lengths (N,) long incl. EOS) for
    translation. An empty id list gives a row holding just EOS (length 1)."""
    lengths = np.array([len(ids) for ids in src_ids], dtype=np.int64)
    offsets = _offsets(lengths)
    flat = np.fromiter((i for ids in src_ids for i in ids), dtype=np.int64, count=int(offsets[-1]))
    src, src_len = _padded(flat, offsets, np.arange(len(src_ids), dtype=np.int64), pad_id, eos_id)
    return torch.from_numpy(src), torch.from_numpy(src_len + 1)
