"""Shared test setup. The datasets cache goes to a fresh temp dir and the hub is off, set
at import time because datasets reads these variables when it is first imported."""

from __future__ import annotations

import atexit
import os
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
