"""Checkpoints as plain data: config, SentencePiece models, weights and training state.

A checkpoint is a dict of dicts, lists, strings, numbers, bytes and tensors, so it loads
with ``torch.load(weights_only=True)`` and is all that ``translate`` needs::

    {"format": 1, "config": {...}, "vocabs": {"src": bytes, "tgt": bytes},
     "model": state_dict, "train_state": {...} or None,
     "shortlist": {"frequent": tensor, "translations": tensor} or None}

(``shortlist``, the table of :mod:`seq2seq.data.shortlist`, is absent from checkpoints
written before it existed: they load with ``shortlist=None``.)

:func:`write_checkpoint` is the one writer of this format (training, ``seq2seq average``
and ``scripts/add_shortlist.py`` all go through it) and :func:`read_checkpoint` its reader.
Writes are atomic (temporary file, fsync, rename): a crash leaves the old file intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import torch

from seq2seq.atomic import atomic_open
from seq2seq.config import RunConfig, config_from_dict, config_to_dict
from seq2seq.data.shortlist import Shortlist
from seq2seq.data.subwords import Vocab
from seq2seq.errors import CheckpointError, output_error
from seq2seq.models import build_model
from seq2seq.models.seq2seq import Seq2Seq

FORMAT = 1


@dataclass
class Stored:
    """What one checkpoint file holds, as data: the run config, the two SentencePiece
    models, the model's weights (a state dict on the CPU), the training state to resume
    from (``None`` in ``best.pt`` and averages) and the shortlist table, if any."""

    config: RunConfig
    src_vocab: Vocab
    tgt_vocab: Vocab
    weights: dict[str, torch.Tensor]
    train_state: dict[str, Any] | None = None
    shortlist: Shortlist | None = None


@dataclass
class Loaded:
    """A checkpoint ready to decode: its model built, on a device, in eval mode."""

    config: RunConfig
    model: Seq2Seq
    src_vocab: Vocab
    tgt_vocab: Vocab
    train_state: dict[str, Any] | None
    shortlist: Shortlist | None = None


def vocab_difference(a: Stored | Loaded, b: Stored | Loaded) -> str | None:
    """The side (``src`` or ``tgt``) whose SentencePiece models differ between two
    checkpoints, or None where both sides are the same (what averaging and ensembles need)."""
    for side in ("src", "tgt"):
        if getattr(a, f"{side}_vocab").model_proto != getattr(b, f"{side}_vocab").model_proto:
            return side
    return None


def write_checkpoint(path: str | Path, stored: Stored) -> None:
    """Write ``stored`` to ``path`` atomically (creating its directory)."""
    payload = {
        "format": FORMAT,
        "config": config_to_dict(stored.config),
        "vocabs": {"src": stored.src_vocab.model_proto, "tgt": stored.tgt_vocab.model_proto},
        "model": stored.weights,
        "train_state": stored.train_state,
        "shortlist": None if stored.shortlist is None else stored.shortlist.to_data(),
    }
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e) from e
    with atomic_open(path) as f:
        recording = _Recording(f)
        try:
            torch.save(payload, cast(IO[bytes], recording))
        except RuntimeError as e:
            if recording.error is None:
                raise
            raise recording.error from e  # atomic_open names path and says what to do


class _Recording:
    """A file that keeps the ``OSError`` of a failed write: ``torch.save`` turns it into a
    ``RuntimeError`` that no longer says why (a full disk, say)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()


def save_checkpoint(
    path: str | Path,
    config: RunConfig,
    model: torch.nn.Module,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    train_state: dict[str, Any] | None = None,
    shortlist: Shortlist | None = None,
) -> None:
    """Write ``model``'s weights (copied to the CPU) with the rest of a run's state."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_checkpoint(path, Stored(config, src_vocab, tgt_vocab, weights, train_state, shortlist))


def read_checkpoint(path: str | Path) -> Stored:
    """One checkpoint's content, on the CPU; :class:`CheckpointError` naming ``path`` if the
    file is missing, unreadable, of another format or holds an invalid config."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        reason = str(e).split(". ")[0]  # torch's first sentence; the rest is advice about torch.save
        raise CheckpointError(f"{path}: not a readable seq2seq checkpoint ({reason}); {DAMAGED}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint of format {FORMAT}")
    src_vocab, tgt_vocab = _vocab(payload, "src", path), _vocab(payload, "tgt", path)
    weights = payload.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: its weights are missing or not tensors; {DAMAGED}")
    try:
        config = config_from_dict(payload["config"])
        table = payload.get("shortlist")
        return Stored(
            config,
            src_vocab,
            tgt_vocab,
            dict(weights),
            payload.get("train_state"),
            None if table is None else Shortlist.from_data(table),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # ConfigError, a bad shortlist table
        raise CheckpointError(f"{path}: a damaged seq2seq checkpoint ({type(e).__name__}: {e})") from e


DAMAGED = "the file is damaged or was edited: use another checkpoint"


def _vocab(payload: dict[str, Any], side: str, path: Path) -> Vocab:
    """The ``side`` SentencePiece model of a checkpoint's payload."""
    vocabs = payload.get("vocabs")
    proto = vocabs.get(side) if isinstance(vocabs, dict) else None
    if not isinstance(proto, bytes) or not proto:
        raise CheckpointError(f"{path}: its {side} SentencePiece model is missing; {DAMAGED}")
    try:
        return Vocab(proto)
    except ValueError as e:
        raise CheckpointError(f"{path}: its {side} SentencePiece model is corrupt ({e}); {DAMAGED}") from None


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """``model.load_state_dict(weights)``, or :class:`CheckpointError` naming ``path`` and the
    tensors that do not fit the model its config describes (missing, unexpected, other shapes)."""
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [
        f"{k} is {tuple(weights[k].shape)}, the config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{path}: its weights do not fit the model of its config ({'; '.join(problems[:3])}{more}); {DAMAGED}"
        )
    model.load_state_dict(weights)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Loaded:
    """Rebuild config, model (in eval mode, on ``device``) and vocabularies from one file."""
    stored = read_checkpoint(path)
    src_vocab, tgt_vocab = stored.src_vocab, stored.tgt_vocab
    model = build_model(stored.config.model, len(src_vocab), len(tgt_vocab), padding_idx=src_vocab.pad_id)
    load_weights(model, stored.weights, path)
    model.to(device).eval()
    return Loaded(stored.config, model, src_vocab, tgt_vocab, stored.train_state, stored.shortlist)
