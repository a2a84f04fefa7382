"""Shared test setup and helpers.

The datasets cache goes to a fresh temp dir and the hub is off, set at import time because
datasets reads these variables when it is first imported.

Test modules take the helpers below with ``from conftest import ...`` (pytest puts this
directory on ``sys.path``); no test module imports another. Tests that train a model,
launch ``torchrun`` or compile carry ``@pytest.mark.slow``: ``pytest -m "not slow"`` runs
the rest in about a minute.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_CACHE = tempfile.mkdtemp(prefix="seq2seq-test-hf-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = _CACHE
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
WORDS = [
    "ein",
    "zwei",
    "drei",
    "vier",
    "fünf",
    "sechs",
    "sieben",
    "acht",
    "neun",
    "zehn",
    "Haus",
    "Hund",
    "Katze",
    "Baum",
]
SEED_VARIABLE = "SEQ2SEQ_TEST_SEED"

log = logging.getLogger("tests")


def write_toy_corpus(directory: Path, n_train: int = 300, n_dev: int = 20, seed: int = 0) -> Path:
    """A copy-and-reverse task in ``directory/{train,dev}.{src,tgt}``: the target is the
    source's words in reverse order."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        src = [" ".join(rng.choices(WORDS, k=rng.randint(2, 7))) for _ in range(n)]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        tgt = [" ".join(reversed(s.split())) for s in src]
        (directory / f"{split}.tgt").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    return directory


def data_overrides(corpus: Path) -> list[str]:
    """``--set`` flags that point the tiny config's train and dev sets at ``corpus``."""
    return ["--set", f"data.train.path={corpus}/train", "--set", f"data.dev.path={corpus}/dev"]


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` as a module, to call its ``main(argv)`` and functions in-process
    (scripts are not a package: tests/test_scripts.py keeps them from importing one another)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_rng(what: str) -> random.Random:
    """A random generator for a randomised test, seeded from ``$SEQ2SEQ_TEST_SEED`` or else
    from fresh entropy. The seed is logged (pytest shows it with a failing test's report),
    so ``SEQ2SEQ_TEST_SEED=<seed> pytest ...`` replays that failure."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    log.warning("%s: %s=%d", what, SEED_VARIABLE, seed)
    return random.Random(seed)


def bare_constants(path: Path) -> list[str]:
    """The lines of a ``metrics.jsonl`` that are JSON only to a lenient reader: a bare NaN or
    Infinity, which strict readers refuse. Lines that are not JSON at all (files the
    bad-input tests write on purpose) are not counted."""

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    bad = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            continue
        try:
            json.loads(line, parse_constant=refuse)
        except ValueError:
            bad.append(f"{path}:{number}: {line}")
    return bad


@pytest.fixture(scope="session", autouse=True)
def strict_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: every ``metrics.jsonl`` that any test's training wrote is strict
    JSON on every line (an error at teardown fails the run)."""
    yield
    bad = [line for path in tmp_path_factory.getbasetemp().rglob("metrics.jsonl") for line in bare_constants(path)]
    assert not bad, "metrics.jsonl lines with a bare NaN or Infinity:\n" + "\n".join(bad[:10])


@pytest.fixture
def toy_corpus(tmp_path: Path) -> Path:
    """The default toy corpus (:func:`write_toy_corpus`) in ``tmp_path/corpus``."""
    return write_toy_corpus(tmp_path / "corpus")


@pytest.fixture
def multi30k_dir() -> Path:
    """The raw Multi30k files (``{split}.{lang}.gz``) shared next to the checkout."""
    path = ROOT.parent / "shared/data/multi30k"
    if not path.is_dir():
        pytest.skip(f"Multi30k not found at {path}")
    return path


def write_untrained_checkpoint(
    path: Path,
    corpus: Path,
    decoder_type: str = "luong",
    sides: tuple[str, ...] = ("src", "tgt"),
    test: bool = True,
    **search: object,
) -> Path:
    """An untrained tiny model (seeded, so always the same) saved as a checkpoint at
    ``path``, with SentencePiece models trained on the ``sides`` of ``corpus``
    (:func:`write_toy_corpus`) and that corpus as its dev set (and test set, if ``test``);
    ``search``: its search section. Written in well under a second: for tests of what happens
    around a model, not of what it learnt."""
    import torch

    from seq2seq.checkpoint import save_checkpoint
    from seq2seq.config import (
        CorpusConfig,
        DataConfig,
        DecoderConfig,
        EncoderConfig,
        ModelConfig,
        RunConfig,
        SearchConfig,
    )
    from seq2seq.data.subwords import Vocab, train_sentencepiece
    from seq2seq.models import build_model

    lines = [line for side in sides for line in (corpus / f"train.{side}").read_text().splitlines()]
    vocab = Vocab(train_sentencepiece(lines, "unigram", 40))
    split = CorpusConfig(format="text", path=f"{corpus}/dev")
    config = RunConfig(
        data=DataConfig(src_lang="src", tgt_lang="tgt", train=split, dev=split, test=split if test else None),
        model=ModelConfig(
            encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
            decoder=DecoderConfig(
                type=decoder_type, attention="general", embedding_dim=8, hidden_size=8, output_size=8
            ),
        ),
        search=SearchConfig(**{"beam_size": 2, "max_length_b": 5, "batch_size": 16, **search}),  # type: ignore[arg-type]
    )
    torch.manual_seed(0)
    model = build_model(config.model, len(vocab), len(vocab), padding_idx=vocab.pad_id)
    save_checkpoint(path, config, model, vocab, vocab)
    return path


def translate_lines(*args: Any, **kwargs: Any) -> Iterator[list[tuple[str, Any]]]:
    """:func:`seq2seq.translate.translate_stream` without the source ids: each line's n-best
    (text, hypothesis) pairs, best first, in input order."""
    from seq2seq.translate import translate_stream

    for _, nbest in translate_stream(*args, **kwargs):
        yield nbest
