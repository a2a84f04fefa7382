"""Checkpoints as plain data: config, SentencePiece models, weights and training state.

A checkpoint is a dict of dicts, lists, strings, numbers, bytes and tensors, so it loads
with ``torch.load(weights_only=True)`` and is all that ``translate`` needs::

    {"format": 1, "config": {...}, "vocabs": {"src": bytes, "tgt": bytes},
     "model": state_dict, "train_state": {...} or None,
     "shortlist": {"frequent": tensor, "translations": tensor} or None}

(``shortlist``, the table of :mod:`seq2seq.data.shortlist`, is absent from checkpoints
written before it existed: they load with ``shortlist=None``.)

Writes are atomic (temporary file, fsync, rename): a crash leaves the old file intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq.atomic import atomic_open
from seq2seq.config import RunConfig, config_from_dict, config_to_dict
from seq2seq.data.shortlist import Shortlist
from seq2seq.data.subwords import Vocab
from seq2seq.errors import CheckpointError
from seq2seq.models import build_model
from seq2seq.models.seq2seq import Seq2Seq

FORMAT = 1


@dataclass
class Loaded:
    config: RunConfig
    model: Seq2Seq
    src_vocab: Vocab
    tgt_vocab: Vocab
    train_state: dict[str, Any] | None
    shortlist: Shortlist | None = None


def save_checkpoint(
    path: str | Path,
    config: RunConfig,
    model: torch.nn.Module,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    train_state: dict[str, Any] | None = None,
    shortlist: Shortlist | None = None,
) -> None:
    payload = {
        "format": FORMAT,
        "config": config_to_dict(config),
        "vocabs": {"src": src_vocab.model_proto, "tgt": tgt_vocab.model_proto},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_state": train_state,
        "shortlist": None if shortlist is None else shortlist.to_data(),
    }
    atomic_save(payload, Path(path))


def atomic_save(payload: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        torch.save(payload, f)


def read_payload(path: str | Path) -> dict[str, Any]:
    """A checkpoint's plain data, on the CPU; :class:`CheckpointError` if it is none."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable seq2seq checkpoint ({e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint of format {FORMAT}")
    return payload


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Loaded:
    """Rebuild config, model (in eval mode, on ``device``) and vocabularies from one file."""
    payload = read_payload(path)
    config = config_from_dict(payload["config"])
    src_vocab, tgt_vocab = Vocab(payload["vocabs"]["src"]), Vocab(payload["vocabs"]["tgt"])
    model = build_model(config.model, len(src_vocab), len(tgt_vocab), padding_idx=src_vocab.pad_id)
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    table = payload.get("shortlist")
    shortlist = None if table is None else Shortlist.from_data(table)
    return Loaded(config, model, src_vocab, tgt_vocab, payload.get("train_state"), shortlist)
