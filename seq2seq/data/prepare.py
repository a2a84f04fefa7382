"""Everything a run needs from its data config: corpora read, subwords trained or loaded,
pairs encoded and filtered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seq2seq.config import CorpusConfig, DataConfig
from seq2seq.data.batching import ParallelData, filter_pairs, to_parallel_data
from seq2seq.data.shortlist import Shortlist, build_shortlist
from seq2seq.data.sources import load_corpus
from seq2seq.data.subwords import Vocab, encode_dataset, prepare_vocabs

if TYPE_CHECKING:
    import datasets


@dataclass
class EvalSet:
    """A dev or test split: encoded sources for search, raw references for BLEU, and the
    non-empty encoded pairs for the loss."""

    src_ids: list[list[int]]
    references: list[str]
    pairs: ParallelData


@dataclass
class RunData:
    train: ParallelData
    dev: EvalSet
    src_vocab: Vocab
    tgt_vocab: Vocab
    shortlist: Shortlist  # for search.shortlist, saved in every checkpoint


def corpus_name(corpus: CorpusConfig) -> str:
    return f"{corpus.format}:{corpus.path or corpus.split}"


def load_eval_set(corpus: CorpusConfig, config: DataConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> EvalSet:
    ds = encode_dataset(load_corpus(corpus, config.src_lang, config.tgt_lang), src_vocab, tgt_vocab)
    vocab_size = max(len(src_vocab), len(tgt_vocab))
    pairs = filter_pairs(to_parallel_data(ds, vocab_size), max_length=10**9, name=corpus_name(corpus))
    return EvalSet(ds["src_ids"], ds["tgt"], pairs)


def prepare_data(config: DataConfig, run_dir: Path, seed: int) -> RunData:
    """Read train and dev, train (or, on resume, load) SentencePiece in ``run_dir``, encode,
    and count the shortlist table on the training pairs."""
    train_raw = load_corpus(config.train, config.src_lang, config.tgt_lang)
    src_vocab, tgt_vocab = prepare_vocabs(train_raw, config.subwords, run_dir, seed=seed)
    train = training_pairs(train_raw, config, src_vocab, tgt_vocab)
    dev = load_eval_set(config.dev, config, src_vocab, tgt_vocab)
    shortlist = build_shortlist(train, len(src_vocab), len(tgt_vocab))
    return RunData(train, dev, src_vocab, tgt_vocab, shortlist)


def training_pairs(train_raw: datasets.Dataset, config: DataConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> ParallelData:
    """The training corpus as a run trains on it: encoded and length-filtered."""
    encoded = encode_dataset(train_raw, src_vocab, tgt_vocab, config.num_proc)
    pairs = to_parallel_data(encoded, max(len(src_vocab), len(tgt_vocab)))
    return filter_pairs(pairs, max_length=config.max_length, name=corpus_name(config.train))


def count_shortlist(config: DataConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Shortlist:
    """The shortlist table that training with ``config`` and these vocabularies counts."""
    train = training_pairs(load_corpus(config.train, config.src_lang, config.tgt_lang), config, src_vocab, tgt_vocab)
    return build_shortlist(train, len(src_vocab), len(tgt_vocab))
