"""The shortlist table: co-occurrence strength, the frequent pieces, candidates per batch."""

import io

import numpy as np
import torch

from seq2seq.data.batching import ParallelData
from seq2seq.data.shortlist import KEEP, Shortlist, build_shortlist


def pairs(rows: list[tuple[list[int], list[int]]]) -> ParallelData:
    def flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
        return np.array([i for s in seqs for i in s], dtype=np.int32), offsets

    src, src_offsets = flat([r[0] for r in rows])
    tgt, tgt_offsets = flat([r[1] for r in rows])
    return ParallelData(src, src_offsets, tgt, tgt_offsets)


# Source 4 translates as target 10, source 5 as 11; target 12 ("the") is in every pair.
DATA = pairs(
    [([4, 6], [10, 12]), ([4, 7], [10, 12]), ([5, 6], [11, 12]), ([5, 7], [11, 12, 12]), ([4, 5], [10, 11, 12])]
)


def test_strongest_translation_first_and_frequency_order() -> None:
    table = build_shortlist(DATA, 9, 14)
    assert table.translations.shape == (9, KEEP)
    # P(12 | 4) = 1 as for 10, but 12 co-occurs with everything: P(4 | 12) = 3/5 < P(4 | 10) = 1.
    assert table.translations[4, :2].tolist() == [10, 12]
    assert table.translations[5, :2].tolist() == [11, 12]
    assert (table.translations[8] == -1).all()  # never seen
    assert table.frequent.tolist() == [12, 10, 11]  # sentence counts 5, 3, 3; ties by id


def test_candidates_and_plain_data_round_trip() -> None:
    table = build_shortlist(DATA, 9, 14)
    src = torch.tensor([[4, 8, 0], [4, 4, 3]])  # 8 unseen, 0 padding, 3 EOS: add nothing
    got = table.candidates(src, per_source=1, frequent=1, always=[3])
    assert got.tolist() == [3, 10, 12] and got.dtype == torch.long
    buffer = io.BytesIO()
    torch.save(table.to_data(), buffer)
    buffer.seek(0)
    again = Shortlist.from_data(torch.load(buffer, weights_only=True))
    assert torch.equal(again.translations, table.translations) and torch.equal(again.frequent, table.frequent)


def test_large_corpora_are_sampled_evenly() -> None:
    many = pairs([([4], [10])] * 50 + [([5], [11])] * 50)
    table = build_shortlist(many, 9, 14, max_pairs=10)
    assert table.translations[4, 0] == 10 and table.translations[5, 0] == 11
