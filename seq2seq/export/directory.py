"""Reading an export directory for :mod:`seq2seq.export.runtime`: ``model.json``, the
onnxruntime sessions of its graphs (:class:`Graphs`, the model that the numpy search steps)
and the SentencePiece models, each failure a :class:`CheckpointError` naming the file.
Imports numpy, onnxruntime and sentencepiece, never torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from seq2seq.errors import CheckpointError, MissingExtraError
from seq2seq.export.search import Arrays

FORMAT, FORMAT_VERSION = "seq2seq-onnx", 1


def read_json(path: Path) -> dict[str, Any]:
    if not path.parent.is_dir():
        raise CheckpointError(f"{path.parent}: no such export directory (write one with seq2seq export)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {path.parent} is not an export directory of seq2seq export") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable model.json ({e}); export the checkpoint again") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f'{path}: not a {FORMAT} description (no "format": "{FORMAT}")')
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {info.get('format_version')!r}; this seq2seq reads version {FORMAT_VERSION}: "
            "export the checkpoint again with this version"
        )
    return info


def session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingExtraError("the exported runtime needs onnxruntime: pip install 'seq2seq-rnn[onnx]'") from None
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (model.json names this graph); export the checkpoint again")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable ONNX graph ({type(e).__name__}: {e})") from None


def processor(path: Path) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_proto=path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing SentencePiece model (model.json names it)") from None
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable SentencePiece model ({e})") from None


class Graphs:
    """The two onnxruntime sessions behind :class:`~seq2seq.export.search.StepModel`."""

    def __init__(self, encoder: Any, step: Any, attends: bool) -> None:
        self.encoder, self.step_session, self.attends = encoder, step, attends
        self.step_inputs = [i.name for i in step.get_inputs()]
        self.num_states = sum(name.startswith("state") for name in self.step_inputs)

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Arrays, Arrays]:
        outs = self.encoder.run(None, {"src": src, "src_lengths": src_lengths})
        state = tuple(outs[: self.num_states])
        if not self.attends:
            return (), state
        mask = np.arange(src.shape[1])[None, :] < src_lengths[:, None]
        return (outs[self.num_states], outs[self.num_states + 1], mask), state

    def step(
        self, prev: np.ndarray, state: Arrays, encoded: Arrays, vocab: np.ndarray | None
    ) -> tuple[np.ndarray, Arrays, np.ndarray | None]:
        feed = {f"state{i}": s for i, s in enumerate(state)} | {"prev": prev}
        feed |= dict(zip(("memory", "keys", "mask"), encoded))
        if vocab is not None:
            feed["vocab"] = vocab
        outs = self.step_session.run(None, {name: feed[name] for name in self.step_inputs})
        k = self.num_states
        return outs[0], tuple(outs[1 : k + 1]), outs[k + 1] if self.attends else None
