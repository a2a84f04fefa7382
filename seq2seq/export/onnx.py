"""Write an export directory: a checkpoint's model as two ONNX graphs, with everything the
runtime (:mod:`seq2seq.export.runtime`) needs to translate raw text without PyTorch.

    seq2seq export CHECKPOINT --output DIR [--int8] [--opset N]

The directory holds:

- ``encoder.onnx``: src (N, S) int64, src_lengths (N,) int64 -> the decoder's initial
  state ``state0..`` and, for the attention decoders, ``memory`` (N, S, C) and ``keys``
  (N, S, A): :meth:`Seq2Seq.encode` then :meth:`Seq2Seq.init_state`, the recurrent layers
  as ONNX's operators with the real lengths (:mod:`seq2seq.export.recurrent`);
- ``decoder_step.onnx``: prev (N,) int64, ``state0..`` [, memory, keys, mask (N, S) bool]
  -> log_probs (N, V), ``state_out0..`` [, attention (N, S)]: :meth:`Seq2Seq.step`;
- ``decoder_step_shortlist.onnx`` (a checkpoint with a shortlist table): the same with a
  ``vocab`` (V',) int64 input, log_probs (N, V') normalised over those ids, and
  ``shortlist.npz`` (the table: ``frequent``, ``translations``);
- ``*.int8.onnx`` beside each graph with ``--int8`` (:mod:`seq2seq.export.quantize`);
- the SentencePiece model(s) (``spm.model``, or ``src.model`` and ``tgt.model``);
- ``model.json``: graphs with their inputs and outputs, the search settings, the versions
  (seq2seq, ONNX opset, torch) and the source checkpoint (path and sha256). Written last
  (and removed first when exporting again), so that an interrupted export is no export.

The plain model is exported (no kernels), in float32 and eval mode. The encoder's cell is
``rnn``, ``gru``, ``lstm`` or ``lstm_peephole`` (others are refused, :data:`EXPORTABLE_CELLS`);
the decoder's may be any.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.atomic import atomic_open
from seq2seq.checkpoint import Loaded, load_checkpoint
from seq2seq.config import config_to_dict
from seq2seq.errors import CheckpointError, ConfigError, MissingExtraError, output_error
from seq2seq.export.directory import FORMAT, FORMAT_VERSION
from seq2seq.export.recurrent import exportable, stepwise
from seq2seq.models.encoder import Encoded
from seq2seq.models.seq2seq import Seq2Seq

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# The encoder's cells: ONNX has recurrent operators (RNN, GRU, LSTM with peepholes) for
# these; lstmp's output projection and the layer-normalised cells have none, and their loop
# over time would unroll to one source length when traced. The decoder's single step
# exports with every cell.
EXPORTABLE_CELLS = ("rnn", "gru", "lstm", "lstm_peephole")
_BATCH = "N"


class EncoderGraph(nn.Module):
    """src, src_lengths -> (*initial decoder state, [memory, keys])."""

    def __init__(self, model: Seq2Seq, attends: bool) -> None:
        super().__init__()
        self.model, self.attends = model, attends

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        encoded = self.model.encode(src, src_lengths)
        state = tuple(self.model.init_state(encoded))
        if not self.attends:
            return state
        assert encoded.keys is not None
        return (*state, encoded.outputs, encoded.keys)


class StepGraph(nn.Module):
    """prev, *state [, memory, keys, mask] [, vocab] -> (log_probs, *state [, attention])."""

    def __init__(self, model: Seq2Seq, num_states: int, attends: bool, shortlist: bool) -> None:
        super().__init__()
        self.model, self.num_states, self.attends, self.shortlist = model, num_states, attends, shortlist

    def forward(self, prev: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        state, rest = inputs[: self.num_states], inputs[self.num_states :]
        if self.attends:
            memory, keys, mask = rest[:3]
            encoded = Encoded(memory, mask, memory[:, :1], keys)
        else:  # the context decoder's state carries its summary; it reads no memory
            encoded = Encoded(prev, prev, prev)
        vocab = rest[-1] if self.shortlist else None
        out = self.model.step(prev, state, encoded, vocab)
        return (out.log_probs, *out.state) + ((out.attention,) if self.attends else ())


def check_exportable(path: str | Path, loaded: Loaded) -> None:
    """Refuse a model whose encoder's cell ONNX cannot run, naming the cell and the config key."""
    cell = loaded.config.model.encoder.cell
    if cell not in EXPORTABLE_CELLS:
        raise CheckpointError(
            f"{path}: model.encoder.cell {cell} cannot be exported to ONNX (it has no recurrent operator for "
            f"it); the encoder exports with the cells {', '.join(EXPORTABLE_CELLS)} (the decoder with any)"
        )


def export_model(
    checkpoint: str | Path, output: str | Path, int8: bool = False, opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """Write the export directory ``output`` for ``checkpoint``; returns its model.json."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise MissingExtraError("seq2seq export needs onnx and onnxruntime: pip install 'seq2seq-rnn[onnx]'") from None
    if not 14 <= opset <= 21:
        raise ConfigError(f"--opset: {opset} must be in 14..21")
    out = Path(output)
    if out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise ConfigError(f"--output {out}: a directory that holds no export; choose a new or empty directory")
    loaded = load_checkpoint(checkpoint)
    check_exportable(checkpoint, loaded)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").unlink(missing_ok=True)  # until the new one: an interrupted export is no export
    except OSError as e:
        raise output_error(out, e) from e
    attends = loaded.config.model.decoder.type != "context"
    graphs = _export_graphs(loaded, out, attends, opset)
    if int8:
        from seq2seq.export.quantize import quantize

        for graph in graphs.values():
            graph["int8"] = quantize(out, graph["file"])
    info = _describe(checkpoint, loaded, graphs, attends, opset)
    info["vocab"].update(_write_vocabs(loaded, out))
    if loaded.shortlist is not None:
        np.savez(
            out / "shortlist.npz",
            frequent=loaded.shortlist.frequent.numpy(),
            translations=loaded.shortlist.translations.numpy(),
        )
        info["shortlist"] = "shortlist.npz"
    with atomic_open(out / "model.json", "w", encoding="utf-8") as f:  # last: the directory is complete
        f.write(json.dumps(info, indent=2) + "\n")
    log.info("exported %s -> %s (%s)", checkpoint, out, ", ".join(sorted(p.name for p in out.iterdir())))
    return info


def _export_graphs(loaded: Loaded, out: Path, attends: bool, opset: int) -> dict[str, dict[str, Any]]:
    model = copy.deepcopy(loaded.model).float().eval()
    try:
        model.encoder.rnn = exportable(model.encoder.rnn)
        model.decoder.rnn = stepwise(model.decoder.rnn)
    except ValueError as e:
        cells = f"{loaded.config.model.encoder.cell}, {loaded.config.model.decoder.cell}"
        raise CheckpointError(f"model cells {cells}: {e}") from None
    # Trace with a batch of 3 and unequal lengths, so that no size is taken for a constant.
    src = torch.tensor([[5, 6, 7, 8, 3], [5, 6, 3, 0, 0], [7, 8, 9, 3, 0]])
    lengths = torch.tensor([5, 3, 4])
    encoder = EncoderGraph(model, attends)
    with torch.no_grad():
        results = encoder(src, lengths)
    k = len(results) - (2 if attends else 0)
    states = [f"state{i}" for i in range(k)]
    extra = ["memory", "keys"] if attends else []
    dims = {name: {0: _BATCH} for name in states} | {name: {0: _BATCH, 1: "S"} for name in extra}
    graphs = {
        "encoder": _export(
            encoder,
            (src, lengths),
            out / "encoder.onnx",
            ["src", "src_lengths"],
            states + extra,
            {"src": {0: _BATCH, 1: "S"}, "src_lengths": {0: _BATCH}} | dims,
            opset,
        )
    }
    mask = torch.arange(src.size(1))[None, :] < lengths[:, None] if attends else None
    shortlists = (False, True) if loaded.shortlist is not None else (False,)
    for shortlist in shortlists:
        name = "decoder_step_shortlist" if shortlist else "decoder_step"
        graphs[name] = _export_step(model, results, k, mask, shortlist, out / f"{name}.onnx", opset)
    return graphs


def _export_step(
    model: Seq2Seq,
    encoded: tuple[Tensor, ...],
    k: int,
    mask: Tensor | None,
    shortlist: bool,
    path: Path,
    opset: int,
) -> dict[str, Any]:
    """The decoder step graph, traced from the encoder graph's outputs ``encoded`` (``k``
    states, then memory and keys where the decoder attends, ``mask`` then given)."""
    attends = mask is not None
    states = [f"state{i}" for i in range(k)]
    prev = torch.tensor([2, 2, 2])
    inputs = [prev, *encoded[:k]]
    names = ["prev", *states]
    dims: dict[str, dict[int, str]] = {"prev": {0: _BATCH}} | {name: {0: _BATCH} for name in states}
    outputs = ["log_probs", *(f"state_out{i}" for i in range(k))] + (["attention"] if attends else [])
    dims |= {name: {0: _BATCH} for name in outputs} | {"log_probs": {0: _BATCH, 1: "V"}}
    if mask is not None:
        inputs += [encoded[k], encoded[k + 1], mask]
        names += ["memory", "keys", "mask"]
        dims |= {name: {0: _BATCH, 1: "S"} for name in ("memory", "keys", "mask", "attention")}
    if shortlist:
        inputs.append(torch.tensor([1, 3, 5, 8]))
        names.append("vocab")
        dims["vocab"] = {0: "V"}
    return _export(StepGraph(model, k, attends, shortlist), tuple(inputs), path, names, outputs, dims, opset)


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dims: dict[str, dict[int, str]],
    opset: int,
) -> dict[str, Any]:
    """torch's TorchScript-based exporter (``dynamo=False``): it traces through the model's
    Python as it is, where ``torch.export`` asks for static control flow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values taken as constants
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={k: v for k, v in dims.items() if k in inputs + outputs},
            opset_version=opset,
        )
    return {"file": path.name, "inputs": _signature(inputs, args), "outputs": outputs}


def _signature(names: list[str], args: tuple[Tensor, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "dtype": str(a.dtype).removeprefix("torch."), "rank": a.dim()} for n, a in zip(names, args)]


def _write_vocabs(loaded: Loaded, out: Path) -> dict[str, str]:
    """The SentencePiece model(s): one file when both sides share it."""
    src, tgt = loaded.src_vocab.model_proto, loaded.tgt_vocab.model_proto
    files = {"src": "spm.model", "tgt": "spm.model"} if src == tgt else {"src": "src.model", "tgt": "tgt.model"}
    (out / files["src"]).write_bytes(src)
    (out / files["tgt"]).write_bytes(tgt)
    return files


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(
    checkpoint: str | Path, loaded: Loaded, graphs: dict[str, Any], attends: bool, opset: int
) -> dict[str, Any]:
    config = loaded.config
    search = config_to_dict(config.search)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"seq2seq": metadata.version("seq2seq-rnn"), "onnx_opset": opset, "torch": torch.__version__},
        "source_checkpoint": {"path": str(Path(checkpoint).resolve()), "sha256": sha256(checkpoint)},
        "model": {
            "src_lang": config.data.src_lang,
            "tgt_lang": config.data.tgt_lang,
            "decoder": config.model.decoder.type,
            "attention": attends,
            "encoder_cell": config.model.encoder.cell,
            "decoder_cell": config.model.decoder.cell,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "config": config_to_dict(config.model),
        },
        "vocab": {
            "pad": loaded.src_vocab.pad_id,
            "unk": loaded.tgt_vocab.unk_id,
            "bos": loaded.tgt_vocab.bos_id,
            "eos": loaded.tgt_vocab.eos_id,
        },
        "search": {k: v for k, v in search.items() if k not in TORCH_SEARCH_KEYS},
        "graphs": graphs,
        "shortlist": None,
    }


# Search settings of torch's alone; the runtime takes every other one.
TORCH_SEARCH_KEYS = ("precision", "kernels", "compile")
