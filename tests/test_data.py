"""Property tests for seq2seq.data: reading corpora, SentencePiece, filtering, batching."""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch

from seq2seq.config import CorpusConfig, SubwordConfig
from seq2seq.data import arrow, subwords
from seq2seq.data.batching import (
    ParallelData,
    filter_pairs,
    make_batch,
    make_source_batch,
    plan_batches,
    to_parallel_data,
)
from seq2seq.data.sources import load_corpus
from seq2seq.data.subwords import Vocab, encode_dataset, prepare_vocabs, sample_sentences, train_sentencepiece
from seq2seq.errors import DataError


def write(path: Path, lines: list[str], *, gz: bool = False, ending: str = "\n") -> Path:
    data = "".join(line + ending for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def rows(ds: datasets.Dataset) -> list[tuple[str, str]]:
    return list(zip(ds["src"], ds["tgt"], strict=True))


def text(path: Path) -> CorpusConfig:
    return CorpusConfig(format="text", path=str(path))


# ---- sources ---------------------------------------------------------------------------


def test_text_pair_plain_and_gz_in_order(tmp_path: Path) -> None:
    src = ["ein Haus", "", "  zwei  Leerzeichen ", "Ä\u2028ö"]
    tgt = ["a house", "empty source", "two spaces", "unicode line separator"]
    write(tmp_path / "c.de", src, ending="\r\n")
    write(tmp_path / "c.en.gz", tgt, gz=True)
    ds = load_corpus(text(tmp_path / "c"), "de", "en")
    assert ds.column_names == ["src", "tgt"]
    assert rows(ds) == list(zip(src, tgt, strict=True))


def test_text_missing_file_names_paths_tried(tmp_path: Path) -> None:
    write(tmp_path / "c.de", ["x"])
    with pytest.raises(DataError, match=r"c\.en.*c\.en\.gz"):
        load_corpus(text(tmp_path / "c"), "de", "en")


@pytest.mark.parametrize("n_src, n_tgt", [(3, 5), (4, 2)])
def test_text_line_count_mismatch(tmp_path: Path, n_src: int, n_tgt: int) -> None:
    write(tmp_path / "m.de", [f"s{i}" for i in range(n_src)])
    write(tmp_path / "m.en", [f"t{i}" for i in range(n_tgt)])
    with pytest.raises(DataError) as info:
        load_corpus(text(tmp_path / "m"), "de", "en")
    message = str(info.value)
    assert f"m.de has {n_src} lines" in message and f"m.en has {n_tgt}" in message


def test_text_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "u.en", ["a", "b", "c"])
    (tmp_path / "u.de").write_bytes(b"gut\nauch gut\nschlecht \xff\xfe\n")
    with pytest.raises(DataError, match=r"u\.de:3: not valid UTF-8"):
        load_corpus(text(tmp_path / "u"), "de", "en")


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "e.de", [])
    write(tmp_path / "e.en", [])
    with pytest.raises(DataError, match=r"e\.de and .*e\.en are empty"):
        load_corpus(text(tmp_path / "e"), "de", "en")
    header_only = write(tmp_path / "e.tsv", ["de\ten"])
    with pytest.raises(DataError, match="no sentence pairs"):
        load_corpus(CorpusConfig(format="tsv", path=str(header_only)), "de", "en")


def test_changed_file_is_read_again(tmp_path: Path) -> None:
    write(tmp_path / "c.de", ["alt"])
    write(tmp_path / "c.en", ["old"])
    assert rows(load_corpus(text(tmp_path / "c"), "de", "en")) == [("alt", "old")]
    write(tmp_path / "c.en", ["newer"])
    assert rows(load_corpus(text(tmp_path / "c"), "de", "en")) == [("alt", "newer")]


def test_tsv_named_columns(tmp_path: Path) -> None:
    lines = ["id\ttarget\tsource", '1\tsay "hi"\tsag "hallo"', "2\t\tleer"]
    path = write(tmp_path / "c.tsv", lines, gz=True)
    corpus = CorpusConfig(format="tsv", path=str(path), src_field="source", tgt_field="target")
    assert rows(load_corpus(corpus, "de", "en")) == [('sag "hallo"', 'say "hi"'), ("leer", "")]
    default = write(tmp_path / "d.tsv", ["en\tde", "house\tHaus"])
    default_ds = load_corpus(CorpusConfig(format="tsv", path=str(default)), "de", "en")
    assert rows(default_ds) == [("Haus", "house")]


def test_tsv_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", ["de\ten", "a\tb"])
    with pytest.raises(DataError, match=r"c\.tsv:1: no column 'fr'.*columns present: de, en"):
        load_corpus(CorpusConfig(format="tsv", path=str(path)), "de", "fr")
    bad = write(tmp_path / "bad.tsv", ["de\ten", "a\tb", "c\td\te"])
    with pytest.raises(DataError, match=r"bad\.tsv:3: 3 tab-separated fields"):
        load_corpus(CorpusConfig(format="tsv", path=str(bad)), "de", "en")


def test_jsonl_named_fields_and_errors(tmp_path: Path) -> None:
    records = [{"s": "eins", "t": "one", "x": 1}, {"s": "", "t": "empty"}]
    path = write(tmp_path / "c.jsonl", [json.dumps(r) for r in records])
    corpus = CorpusConfig(format="jsonl", path=str(path), src_field="s", tgt_field="t")
    assert rows(load_corpus(corpus, "de", "en")) == [("eins", "one"), ("", "empty")]
    missing = write(tmp_path / "m.jsonl", ['{"de": "a", "en": "b"}', '{"de": "c"}'])
    with pytest.raises(DataError, match=r"m\.jsonl:2: no field 'en'"):
        load_corpus(CorpusConfig(format="jsonl", path=str(missing)), "de", "en")
    broken = write(tmp_path / "b.jsonl", ['{"de": "a", "en": "b"}', '{"de": "c",'])
    with pytest.raises(DataError, match=r"b\.jsonl:2: not valid JSON"):
        load_corpus(CorpusConfig(format="jsonl", path=str(broken)), "de", "en")


def test_hf_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    flat = datasets.Dataset.from_dict({"en": ["one", "two"], "de": ["eins", "zwei"], "n": [1, 2]})
    flat.save_to_disk(str(tmp_path / "flat"))
    flat_ds = load_corpus(CorpusConfig(format="hf", path=str(tmp_path / "flat")), "de", "en")
    assert rows(flat_ds) == [("eins", "one"), ("zwei", "two")]
    nested = datasets.Dataset.from_dict({"translation": [{"de": "drei", "en": "three"}]})
    datasets.DatasetDict({"train": flat, "validation": nested}).save_to_disk(str(tmp_path / "dict"))
    corpus = CorpusConfig(format="hf", path=str(tmp_path / "dict"), split="validation")
    ds = load_corpus(corpus, "de", "en")
    assert ds.column_names == ["src", "tgt"] and rows(ds) == [("drei", "three")]
    with pytest.raises(DataError, match="splits present: train, validation"):
        load_corpus(replace(corpus, split="test"), "de", "en")
    with pytest.raises(DataError, match="columns present: en, de, n"):
        load_corpus(CorpusConfig(format="hf", path=str(tmp_path / "flat")), "de", "fr")


def test_multi30k_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "val.de.gz", ["ein Hund", "eine Katze"], gz=True)
    write(tmp_path / "val.en.gz", ["a dog", "a cat"], gz=True)
    monkeypatch.setenv("SEQ2SEQ_MULTI30K", str(tmp_path))
    ds = load_corpus(CorpusConfig(format="multi30k", split="val"), "de", "en")
    assert rows(ds) == [("ein Hund", "a dog"), ("eine Katze", "a cat")]


def test_multi30k_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SEQ2SEQ_MULTI30K the corpus comes through datasets.load_dataset (faked here:
    tests stay offline), with the hub's split names."""
    asked = []

    def fake_load_dataset(name: str, split: str) -> datasets.Dataset:
        asked.append((name, split))
        return datasets.Dataset.from_dict({"en": ["a dog"], "de": ["ein Hund"]})

    monkeypatch.delenv("SEQ2SEQ_MULTI30K", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_corpus(CorpusConfig(format="multi30k", split="val"), "de", "en")
    assert rows(ds) == [("ein Hund", "a dog")] and asked == [("bentrevett/multi30k", "validation")]


def test_multi30k_offline_says_to_set_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, split: str) -> datasets.Dataset:
        raise ConnectionError("no route to the hub")

    monkeypatch.delenv("SEQ2SEQ_MULTI30K", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"ConnectionError: no route to the hub.*set SEQ2SEQ_MULTI30K"):
        load_corpus(CorpusConfig(format="multi30k", split="train"), "de", "en")


def test_real_multi30k_sizes(multi30k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_MULTI30K", str(multi30k_dir))
    sizes = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}
    for split, size in sizes.items():
        ds = load_corpus(CorpusConfig(format="multi30k", split=split), "de", "en")
        assert len(ds) == size, split
        assert all(ds["src"][:10]) and all(ds["tgt"][:10])


# ---- subwords --------------------------------------------------------------------------


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnop"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 7))) for _ in range(200)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"src": [*sentences(600, 1), ""], "tgt": sentences(601, 2)})


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab(train_sentencepiece(sentences(600), "unigram", 120))


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_deterministic(model_type: str) -> None:
    data = [*sentences(400), ""]
    first, second = (
        train_sentencepiece(iter(data), model_type, 100, input_sentence_size=200, seed=3) for _ in range(2)
    )
    assert first == second


def test_sentencepiece_in_a_subprocess_equals_in_process() -> None:
    data = sentences(400)
    child = Vocab(train_sentencepiece(data, "unigram", 100, in_subprocess=True))
    here = Vocab(train_sentencepiece(data, "unigram", 100))
    # The protos differ only in the trainer options they record (the input file's name).
    assert child.pieces(list(range(len(child)))) == here.pieces(list(range(len(here))))
    assert child.encode(data) == here.encode(data)


def test_sample_sentences_is_seeded_uniform_and_in_corpus_order(corpus: datasets.Dataset) -> None:
    everything = list(sample_sentences(corpus, ("src", "tgt"), 0, seed=0))
    assert everything == list(corpus["src"]) + list(corpus["tgt"])
    sample = list(sample_sentences(corpus, ("src", "tgt"), 300, seed=1))
    assert sample == list(sample_sentences(corpus, ("src", "tgt"), 300, seed=1))
    assert sample != list(sample_sentences(corpus, ("src", "tgt"), 300, seed=2))
    assert len(sample) == 300
    positions = [everything.index(s) for s in sample if everything.count(s) == 1]
    assert positions == sorted(positions)
    from_src = sum(p < len(corpus) for p in positions) / len(positions)
    assert 0.3 < from_src < 0.7  # both sides sampled


def test_vocab_round_trip_and_special_ids(vocab: Vocab) -> None:
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.pieces([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    texts = sentences(20, seed=7)
    ids = vocab.encode(texts)
    assert all(min(seq) > 3 for seq in ids) and all(max(seq) < len(vocab) for seq in ids)
    assert vocab.decode(ids) == texts
    assert vocab.decode([[2, *ids[0], 3, 0, 0]]) == texts[:1]
    assert vocab.decode([]) == [] and vocab.decode([[]]) == [""] and vocab.encode([]) == []
    assert "".join(vocab.pieces(ids[0])).replace("\u2581", " ").strip() == texts[0]
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone.model_proto == vocab.model_proto and clone.encode(texts) == ids


def test_tiny_corpus_does_not_fail_on_large_vocab_size() -> None:
    assert 4 < len(Vocab(train_sentencepiece(["ab ba", "abba"] * 5, "unigram", 8000))) < 8000


@pytest.mark.parametrize("joint", [True, False])
def test_prepare_vocabs_writes_then_reloads(
    tmp_path: Path, corpus: datasets.Dataset, monkeypatch: pytest.MonkeyPatch, joint: bool
) -> None:
    config = SubwordConfig(vocab_size=100, joint=joint)
    src, tgt = prepare_vocabs(corpus, config, tmp_path / "run")
    names = ["spm.model"] if joint else ["src.model", "tgt.model"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(names)
    assert (src.model_proto == tgt.model_proto) is joint
    stamps = [os.stat(tmp_path / "run" / n).st_mtime_ns for n in names]

    def no_training(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("retrained instead of loading")

    monkeypatch.setattr(subwords, "train_sentencepiece", no_training)
    src2, tgt2 = prepare_vocabs(corpus, config, tmp_path / "run")
    assert (src2.model_proto, tgt2.model_proto) == (src.model_proto, tgt.model_proto)
    assert [os.stat(tmp_path / "run" / n).st_mtime_ns for n in names] == stamps


def test_encode_dataset(corpus: datasets.Dataset, vocab: Vocab) -> None:
    ds = encode_dataset(corpus, vocab, vocab)
    assert ds.column_names == ["src", "tgt", "src_ids", "tgt_ids"]
    assert ds["src_ids"][:5] == vocab.encode(corpus["src"][:5]) and ds["src_ids"][-1] == []


ENCODE_IN_A_CHILD = """
import sys, datasets
from seq2seq.data.subwords import Vocab, encode_dataset
vocab = Vocab(open(sys.argv[2], "rb").read())
print(encode_dataset(datasets.load_from_disk(sys.argv[1]), vocab, vocab).cache_files[0]["filename"])
"""


def test_encoding_is_cached_by_corpus_and_models_in_every_process(
    corpus: datasets.Dataset, vocab: Vocab, tmp_path: Path
) -> None:
    """The same corpus and models find the same cache file, in this process and in another
    (a resumed run, another rank); other models get a cache of their own."""
    corpus.save_to_disk(str(tmp_path / "raw"))
    raw = datasets.load_from_disk(str(tmp_path / "raw"))
    cache = encode_dataset(raw, vocab, vocab).cache_files
    assert len(cache) == 1 and Path(cache[0]["filename"]).parent == tmp_path / "raw"
    written = Path(cache[0]["filename"]).stat().st_mtime_ns
    assert encode_dataset(raw, vocab, vocab).cache_files == cache
    (tmp_path / "spm.model").write_bytes(vocab.model_proto)
    child = [sys.executable, "-c", ENCODE_IN_A_CHILD, str(tmp_path / "raw"), str(tmp_path / "spm.model")]
    assert subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip() == cache[0]["filename"]
    assert Path(cache[0]["filename"]).stat().st_mtime_ns == written  # read back, never written again
    other = Vocab(train_sentencepiece(sentences(600), "bpe", 120))
    assert encode_dataset(raw, vocab, other).cache_files != cache


def test_encoding_in_two_processes_keeps_rows_and_order(corpus: datasets.Dataset, vocab: Vocab) -> None:
    one = encode_dataset(corpus, vocab, vocab)
    two = encode_dataset(corpus.map(lambda row: row, desc="copy"), vocab, vocab, num_proc=2)  # not cached
    assert two["src_ids"] == one["src_ids"] and two["tgt_ids"] == one["tgt_ids"]


def test_to_parallel_data_matches_columns(corpus: datasets.Dataset, vocab: Vocab) -> None:
    ds = encode_dataset(corpus, vocab, vocab).select(range(600, 1, -3))  # an indices mapping
    data = to_parallel_data(ds, len(vocab))
    assert len(data) == len(ds)
    assert data.src.dtype == np.uint16 and data.src_offsets.dtype == np.int64
    assert to_parallel_data(ds, 70_000).src.dtype == np.int32  # ids beyond 16 bits
    for i in (0, 5, len(ds) - 1):
        assert data.src_ids(i).tolist() == ds[i]["src_ids"]
        assert data.tgt_ids(i).tolist() == ds[i]["tgt_ids"]
    assert data.src_lengths.tolist() == [len(x) for x in ds["src_ids"]]


def test_to_parallel_data_reads_cache_files_as_the_dataset_does(
    corpus: datasets.Dataset, vocab: Vocab, tmp_path: Path
) -> None:
    """Arrow cache files are read as streams (no memory map); the result equals reading the
    in-memory dataset, and a slice of the files falls back to the dataset's own reader."""
    corpus.save_to_disk(str(tmp_path / "raw"))
    on_disk = encode_dataset(datasets.load_from_disk(str(tmp_path / "raw")), vocab, vocab, num_proc=2)
    assert len(on_disk.cache_files) == 2  # one shard per process, read one after the other
    in_memory = to_parallel_data(encode_dataset(corpus, vocab, vocab), len(vocab))
    streamed = to_parallel_data(on_disk, len(vocab))
    for name in ("src", "src_offsets", "tgt", "tgt_offsets"):
        assert np.array_equal(getattr(streamed, name), getattr(in_memory, name))
    sliced = to_parallel_data(on_disk.select(range(100, 400)), len(vocab))  # contiguous: no indices
    expected = in_memory.select(np.arange(100, 400))
    assert np.array_equal(sliced.src, expected.src) and np.array_equal(sliced.tgt_offsets, expected.tgt_offsets)


def same(a: ParallelData, b: ParallelData) -> bool:
    return all(
        np.array_equal(getattr(a, name), getattr(b, name)) for name in ("src", "src_offsets", "tgt", "tgt_offsets")
    )


@pytest.fixture(scope="module")
def on_disk(corpus: datasets.Dataset, vocab: Vocab, tmp_path_factory: pytest.TempPathFactory) -> datasets.Dataset:
    """The corpus encoded from disk in two processes: two Arrow cache files."""
    raw = tmp_path_factory.mktemp("raw")
    corpus.save_to_disk(str(raw))
    return encode_dataset(datasets.load_from_disk(str(raw)), vocab, vocab, num_proc=2)


def never(*args: object, **kwargs: object) -> None:
    raise AssertionError("read the cache files as streams")


def test_the_private_datasets_features_the_stream_reader_needs_are_there() -> None:
    """Both capability checks pass with the datasets version installed, so that the other
    tests cover the fast path; where a new version fails one, training still reads its data
    (the fallback below) but holds its pages in memory."""
    assert arrow.index_mapping_visible() and arrow.cache_files_are_streams()


def test_whole_cache_files_are_read_as_streams(on_disk: datasets.Dataset, vocab: Vocab) -> None:
    assert arrow.whole_cache_files(on_disk, ["src_ids", "tgt_ids"]) == [f["filename"] for f in on_disk.cache_files]
    assert arrow.whole_cache_files(on_disk.select(range(100, 400)), ["src_ids"]) is None  # rows left out
    assert arrow.whole_cache_files(on_disk.select([3, 2, 1]), ["src_ids"]) is None  # an index mapping
    assert arrow.whole_cache_files(on_disk.shuffle(seed=0), ["src_ids"]) is None
    # An index mapping held in memory: the cache files alone look whole.
    assert arrow.whole_cache_files(on_disk.shuffle(seed=0, keep_in_memory=True), ["src_ids"]) is None
    assert arrow.whole_cache_files(on_disk, ["src_ids", "absent"]) is None


@pytest.mark.parametrize("check", ["index_mapping_visible", "cache_files_are_streams"])
def test_a_failed_capability_check_reads_the_public_way_with_the_same_result(
    on_disk: datasets.Dataset, vocab: Vocab, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    fast = to_parallel_data(on_disk, len(vocab))
    monkeypatch.setattr(arrow, check, lambda: False)
    monkeypatch.setattr(arrow, "_stream_chunks", never)
    assert same(to_parallel_data(on_disk, len(vocab)), fast)
    order = np.random.default_rng(0).permutation(len(on_disk))
    assert same(to_parallel_data(on_disk.select(order), len(vocab)), fast.select(order))  # an index mapping


def test_the_index_mapping_check_fails_where_select_sets_no_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert arrow.index_mapping_visible.__wrapped__()
    monkeypatch.setattr(datasets.Dataset, "select", lambda self, indices: self)
    assert not arrow.index_mapping_visible.__wrapped__()


def test_the_stream_check_fails_where_cache_files_read_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert arrow.cache_files_are_streams.__wrapped__()
    with monkeypatch.context() as m:
        m.setattr(arrow, "_stream_rows", lambda files, names: -1)  # as for a file that is no stream
        assert not arrow.cache_files_are_streams.__wrapped__()
    read = arrow._stream_chunks

    def reversed_rows(files: list[str], names: list[str]) -> Iterator[dict[str, Any]]:
        for chunk in read(files, names):
            yield {name: column[::-1] for name, column in chunk.items()}

    monkeypatch.setattr(arrow, "_stream_chunks", reversed_rows)
    assert not arrow.cache_files_are_streams.__wrapped__()


def test_stream_rows_counts_streams_and_refuses_other_files(tmp_path: Path) -> None:
    import pyarrow as pa

    table = pa.table({"src_ids": [[1, 2], [3]], "tgt_ids": [[4], []]})
    for name, new in (("stream", pa.ipc.new_stream), ("file", pa.ipc.new_file)):
        with pa.OSFile(str(tmp_path / name), "wb") as sink, new(sink, table.schema) as writer:
            writer.write_table(table)
    (tmp_path / "garbage").write_bytes(b"not arrow at all")
    stream, file, garbage = (str(tmp_path / name) for name in ("stream", "file", "garbage"))
    assert arrow._stream_rows([stream, stream], ["src_ids", "tgt_ids"]) == 4
    assert arrow._stream_rows([stream], ["src_ids", "other"]) == -1
    assert arrow._stream_rows([stream, file], ["src_ids"]) == -1
    assert arrow._stream_rows([garbage], ["src_ids"]) == -1
    assert arrow._stream_rows([str(tmp_path / "missing")], ["src_ids"]) == -1


# ---- filtering and batching --------------------------------------------------------------


def pairs(src: list[list[int]], tgt: list[list[int]]) -> ParallelData:
    def flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        return np.array([i for s in seqs for i in s], dtype=np.int32), offsets

    return ParallelData(*flat(src), *flat(tgt))


def test_filter_pairs_counts(caplog: pytest.LogCaptureFixture) -> None:
    data = pairs([[4], [], [4, 5, 6], [5, 6], [7]], [[8], [9], [8], [], [9, 9, 9, 9]])
    with caplog.at_level(logging.INFO):
        kept = filter_pairs(data, max_length=3, name="corpus.x")
    assert "corpus.x: kept 2 of 5 pairs; dropped 2 empty, 1 longer than 3 pieces" in caplog.text
    assert [kept.src_ids(i).tolist() for i in range(2)] == [[4], [4, 5, 6]]
    assert [kept.tgt_ids(i).tolist() for i in range(2)] == [[8], [8]]
    with pytest.raises(DataError, match=r"corpus\.x: .*raise data\.max_length"):
        filter_pairs(data, max_length=0, name="corpus.x")


def random_lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 60, n), rng.integers(1, 60, n)


def test_plan_batches_token_bound() -> None:
    src, tgt = random_lengths(5000)
    src[:3] = 500  # over the limit alone
    plan = plan_batches(src, tgt, batch_tokens=400, seed=1)
    everything = np.concatenate(plan)
    assert everything.dtype == np.int64 and np.array_equal(np.sort(everything), np.arange(5000))
    for batch in plan:
        cost = len(batch) * int(max(src[batch].max(), tgt[batch].max()) + 1)
        assert cost <= 400 or len(batch) == 1
    assert sum(len(b) == 1 and src[b[0]] == 500 for b in plan) == 3


def test_plan_batches_sentences_and_seeds() -> None:
    src, tgt = random_lengths(1000)
    plan = plan_batches(src, tgt, batch_tokens=1, batch_sentences=64, seed=0)
    assert sorted(len(b) for b in plan) == [40] + [64] * 15
    assert np.array_equal(np.sort(np.concatenate(plan)), np.arange(1000))
    same = plan_batches(src, tgt, batch_tokens=1, batch_sentences=64, seed=0)
    other = plan_batches(src, tgt, batch_tokens=1, batch_sentences=64, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(plan, same, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(plan, other, strict=True))


def test_plan_batches_without_seed_is_sorted() -> None:
    src, tgt = random_lengths(2000)
    order = np.concatenate(plan_batches(src, tgt, batch_tokens=1000))
    keys = list(zip(src[order].tolist(), tgt[order].tolist(), strict=True))
    assert keys == sorted(keys)
    assert plan_batches(np.zeros(0, np.int64), np.zeros(0, np.int64), 100) == []


def test_make_batch() -> None:
    data = pairs([[4, 5, 6], [7], [8, 9]], [[10], [11, 12, 13, 14], [15, 16]])
    batch = make_batch(data, np.array([2, 0, 1]), pad_id=0, bos_id=2, eos_id=3)
    assert batch.size == 3 and batch.num_tokens == 6 + 7
    assert batch.src.tolist() == [[8, 9, 3, 0], [4, 5, 6, 3], [7, 3, 0, 0]]
    assert batch.src_lengths.tolist() == [3, 4, 2]
    assert batch.tgt_in.tolist() == [[2, 15, 16, 0, 0], [2, 10, 0, 0, 0], [2, 11, 12, 13, 14]]
    assert batch.tgt_out.tolist() == [[15, 16, 3, 0, 0], [10, 3, 0, 0, 0], [11, 12, 13, 14, 3]]
    tensors = (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
    assert all(t.dtype == torch.long for t in tensors)
    moved = batch.to(torch.device("cpu"))
    assert torch.equal(moved.tgt_out, batch.tgt_out) and moved.num_tokens == batch.num_tokens


def test_make_source_batch_with_empty_sentence() -> None:
    src, lengths = make_source_batch([[5, 6], [], [7]], pad_id=0, eos_id=3)
    assert src.tolist() == [[5, 6, 3], [3, 0, 0], [7, 3, 0]] and lengths.tolist() == [3, 1, 2]
    assert src.dtype == torch.long and lengths.dtype == torch.long
