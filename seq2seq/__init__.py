"""seq2seq: recurrent encoder-decoder machine translation.

The public names load lazily (PEP 562), so that ``import seq2seq`` stays light: torch loads
with the first name that needs it, not with the package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seq2seq.api import Translator
    from seq2seq.config import RunConfig, load_config
    from seq2seq.errors import Seq2SeqError
    from seq2seq.outputs import PairScore, Translation

# public name -> the module that defines it
_PUBLIC = {
    "Translator": "seq2seq.api",
    "Translation": "seq2seq.outputs",
    "PairScore": "seq2seq.outputs",
    "load_config": "seq2seq.config",
    "RunConfig": "seq2seq.config",
    "Seq2SeqError": "seq2seq.errors",
}
__all__ = ["PairScore", "RunConfig", "Seq2SeqError", "Translation", "Translator", "load_config"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
