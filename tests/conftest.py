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
import logging
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


def seeded_rng(what: str) -> random.Random:
    """A random generator for a randomised test, seeded from ``$SEQ2SEQ_TEST_SEED`` or else
    from fresh entropy. The seed is logged (pytest shows it with a failing test's report),
    so ``SEQ2SEQ_TEST_SEED=<seed> pytest ...`` replays that failure."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    log.warning("%s: %s=%d", what, SEED_VARIABLE, seed)
    return random.Random(seed)


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
