"""Shared test setup. The datasets cache goes to a fresh temp dir and the hub is off, set
at import time because datasets reads these variables when it is first imported."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="seq2seq-test-hf-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = _CACHE
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def multi30k_dir() -> Path:
    """The raw Multi30k files (``{split}.{lang}.gz``) shared next to the checkout."""
    path = Path(__file__).resolve().parents[1].parent / "shared/data/multi30k"
    if not path.is_dir():
        pytest.skip(f"Multi30k not found at {path}")
    return path


TOY_WORDS = ["ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn"]
TOY_WORDS += ["Haus", "Hund", "Katze", "Baum"]


def write_toy_corpus(directory: Path, n_train: int = 300, n_dev: int = 20, seed: int = 0) -> Path:
    """A copy-and-reverse task in ``directory/{train,dev}.{src,tgt}``: the target is the
    source's words in reverse order."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        src = [" ".join(rng.choices(TOY_WORDS, k=rng.randint(2, 7))) for _ in range(n)]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        tgt = [" ".join(reversed(s.split())) for s in src]
        (directory / f"{split}.tgt").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`write_toy_corpus` once per session (tests only read it)."""
    return write_toy_corpus(tmp_path_factory.mktemp("toy") / "corpus")
