"""SentencePiece subword models: train in memory, save/load in the run directory, and
encode a corpus with ``datasets.map``.

Every model has the same special ids (pad 0, unk 1, bos 2, eos 3), so embedding tables
and batching can rely on them. A :class:`Vocab` is built from the serialized model
proto, which is also what checkpoints store.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sentencepiece as spm

from seq2seq.atomic import atomic_open
from seq2seq.config import SubwordConfig
from seq2seq.errors import DataError

if TYPE_CHECKING:  # datasets loads only where a corpus is read, not to translate
    import datasets

logger = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_MIN_SAMPLE = 101  # sentencepiece rejects input_sentence_size in 1..100
_READ_CHUNK = 10_000
_SUBPROCESS_SENTENCES = 200_000  # train SentencePiece in a child process above this many sentences


class Vocab:
    """A SentencePiece model: text <-> ids. Built from the serialized model proto (bytes)."""

    def __init__(self, model_proto: bytes) -> None:
        self._build(model_proto)

    def _build(self, model_proto: bytes) -> None:
        self.model_proto = bytes(model_proto)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError:  # its message is an internal assertion (ParseFromArray), not a reason
            raise ValueError(f"not a SentencePiece model ({len(self.model_proto)} bytes that do not parse)") from None
        special = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id())
        if min(special) < 0:
            raise ValueError(f"SentencePiece model lacks pad/bos/eos ids (got {special})")
        self._specials = frozenset(special)

    def __getstate__(self) -> dict[str, Any]:
        # The processor is a C++ object; the proto is enough to rebuild it (pickling
        # for datasets' fingerprinting and for worker processes).
        return {"model_proto": self.model_proto}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._build(state["model_proto"])

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def pad_id(self) -> int:
        return int(self._sp.pad_id())

    @property
    def unk_id(self) -> int:
        return int(self._sp.unk_id())

    @property
    def bos_id(self) -> int:
        return int(self._sp.bos_id())

    @property
    def eos_id(self) -> int:
        return int(self._sp.eos_id())

    def __len__(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Piece ids per text, without BOS/EOS."""
        ids: list[list[int]] = self._sp.encode(list(texts), out_type=int)
        return ids

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Detokenized text per id list; pad/bos/eos ids are dropped first."""
        if not ids:  # sentencepiece would read [] as one empty id list and return ""
            return []
        kept = [[int(i) for i in seq if int(i) not in self._specials] for seq in ids]
        texts: list[str] = self._sp.decode(kept)
        return texts

    def pieces(self, ids: list[int]) -> list[str]:
        """The piece strings of ``ids`` (e.g. ``"▁the"``), for attention plots."""
        return [self._sp.id_to_piece(int(i)) for i in ids]


def train_sentencepiece(
    sentences: Iterable[str],
    model_type: str,
    vocab_size: int,
    character_coverage: float = 1.0,
    input_sentence_size: int = 0,
    seed: int = 0,
    in_subprocess: bool = False,
) -> bytes:
    """Train a SentencePiece model and return its serialized proto.

    ``vocab_size`` is a soft limit (a tiny corpus gives a smaller model instead of an
    error). ``input_sentence_size > 0`` trains on a random sample of that many sentences
    (at least 101, sentencepiece's minimum). Same input and seed give identical bytes.
    ``in_subprocess`` writes the sentences to a temporary file and trains in a child
    process: the trainer's memory (gigabytes for millions of sentences) goes back to the
    system when it ends instead of staying in the training process's heap."""
    options: dict[str, Any] = {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "hard_vocab_limit": False,
        "num_threads": 2,
        "minloglevel": 2,  # the C++ trainer logs every step to stderr otherwise
    }
    if input_sentence_size > 0:
        options["input_sentence_size"] = max(input_sentence_size, _MIN_SAMPLE)
        options["shuffle_input_sentence"] = True
    kept = [0]  # non-empty sentences handed to the trainer

    def non_empty() -> Iterator[str]:
        for s in sentences:
            if s:
                kept[0] += 1
                yield s

    if not in_subprocess:
        try:
            return _train(seed, options, sentence_iterator=non_empty())
        except RuntimeError as e:  # its messages are internal assertions, e.g. [!sentences_.empty()]
            raise DataError(NO_SENTENCES if kept[0] == 0 else f"SentencePiece cannot train on them ({e})") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sentences.txt"
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(s + "\n" for s in non_empty())
        if kept[0] == 0:
            raise DataError(NO_SENTENCES)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, not a copy of this heap
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            # One file line is one sentence, whatever its length (spm's default cut is 4,192 bytes).
            return pool.submit(_train, seed, {**options, "max_sentence_length": 1 << 30}, input=str(path)).result()


NO_SENTENCES = "every sentence is empty: a SentencePiece model needs text to learn from"


def _train(seed: int, options: dict[str, Any], **source: Any) -> bytes:
    # The sample is drawn with sentencepiece's global generator; seed it for reproducibility.
    spm.set_random_generator_seed(seed)
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(model_writer=writer, **source, **options)
    return writer.getvalue()


def sample_sentences(ds: datasets.Dataset, columns: tuple[str, ...], size: int, seed: int) -> Iterator[str]:
    """The text of ``columns`` (one after the other), or, with ``size`` > 0, a uniform random
    sample of ``size`` of those sentences (seeded; in corpus order), read in chunks."""
    total = len(ds) * len(columns)
    if not 0 < size < total:
        for column in columns:
            for chunk in ds.select_columns([column]).iter(batch_size=_READ_CHUNK):
                yield from chunk[column]
        return
    picked = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    for k, column in enumerate(columns):
        rows = picked[(picked >= k * len(ds)) & (picked < (k + 1) * len(ds))] - k * len(ds)
        part = ds.select_columns([column])
        for start in range(0, len(rows), _READ_CHUNK):
            yield from part.select(rows[start : start + _READ_CHUNK])[column]


def prepare_vocabs(
    train: datasets.Dataset, config: SubwordConfig, directory: Path, seed: int = 0
) -> tuple[Vocab, Vocab]:
    """Load the models from ``directory`` if present (resume), else train and save them.

    Joint: one model ``spm.model`` trained on source and target sentences together, used
    for both sides. Otherwise ``src.model`` and ``tgt.model``. ``config.input_sentence_size``
    > 0 trains on a random sample of that many sentences. Returns (source, target)."""
    directory = Path(directory)
    names = ("spm.model",) if config.joint else ("src.model", "tgt.model")
    paths = [directory / name for name in names]
    if all(path.is_file() for path in paths):
        vocabs = [_load(path) for path in paths]
        logger.info("loaded subword models %s", ", ".join(map(str, paths)))
    else:
        columns = [("src", "tgt")] if config.joint else [("src",), ("tgt",)]
        directory.mkdir(parents=True, exist_ok=True)
        vocabs = []
        for path, cols in zip(paths, columns, strict=True):
            size = config.input_sentence_size or len(train) * len(cols)
            try:
                proto = train_sentencepiece(
                    sample_sentences(train, cols, config.input_sentence_size, seed),
                    config.type,
                    config.vocab_size,
                    config.character_coverage,
                    seed=seed,
                    in_subprocess=size > _SUBPROCESS_SENTENCES,
                )
            except DataError as e:
                side = "both sides" if len(cols) == 2 else f"the {cols[0]} side"
                raise DataError(f"the training corpus (data.train), {side}: {e}; check its files") from None
            _write_atomic(path, proto)
            vocabs.append(Vocab(proto))
            logger.info(
                "trained %s subword model on %s: %d pieces -> %s", config.type, "+".join(cols), len(vocabs[-1]), path
            )
    return vocabs[0], vocabs[-1]


def _load(path: Path) -> Vocab:
    try:
        return Vocab(path.read_bytes())
    except (RuntimeError, ValueError) as e:
        raise DataError(f"{path}: {e}; delete it to train it again") from e


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename: a crash never leaves a
    truncated model that a resumed run would load."""
    with atomic_open(path) as f:
        f.write(data)


def encode_dataset(ds: datasets.Dataset, src_vocab: Vocab, tgt_vocab: Vocab, num_proc: int = 1) -> datasets.Dataset:
    """Add int32 list columns ``src_ids`` / ``tgt_ids`` (piece ids, no BOS/EOS), encoding
    batches of 1,000 rows in ``num_proc`` processes.

    ``datasets`` fingerprints the result from the input's fingerprint, the encoding function
    and its arguments, the two models included (a :class:`Vocab` pickles as its proto): the
    same corpus encoded with other models, or by a changed function, is never served from
    cache, and every process (a resumed run, each rank under torchrun) finds the same cache."""
    import datasets

    features = ds.features.copy()
    features["src_ids"] = datasets.List(datasets.Value("int32"))
    features["tgt_ids"] = datasets.List(datasets.Value("int32"))
    return ds.map(
        _encode_batch,
        batched=True,
        fn_kwargs={"src_vocab": src_vocab, "tgt_vocab": tgt_vocab},
        features=features,
        desc="encoding subwords",
        num_proc=num_proc if num_proc > 1 else None,
    )


def _encode_batch(batch: dict[str, list[str]], src_vocab: Vocab, tgt_vocab: Vocab) -> dict[str, Any]:
    return {"src_ids": src_vocab.encode(batch["src"]), "tgt_ids": tgt_vocab.encode(batch["tgt"])}
