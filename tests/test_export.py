"""ONNX export and the torch-free runtime: the exported model searches as the torch model
does (same ids, close scores) for every decoder type and the exportable cells; refused
cells, damaged export directories and the runtime's imports."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import WORDS

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import main
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, RunConfig, SearchConfig
from seq2seq.data.shortlist import Shortlist
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.errors import CheckpointError, ConfigError, MissingExtraError
from seq2seq.export.onnx import export_model
from seq2seq.export.runtime import ExportedTranslator
from seq2seq.models import build_model
from seq2seq.translate import translate_ids

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
LINES = [
    "ein Hund",
    "zwei Katze Baum sieben",
    "Haus",
    "",
    "drei vier fünf sechs sieben acht neun zehn",
    "Baum Katze",
    "ein zwei drei",
]
SMALL = {"embedding_dim": 8, "hidden_size": 8}
# name -> the decoder's settings
DECODERS: dict[str, dict[str, Any]] = {
    "context": {"type": "context"},
    "bahdanau": {"type": "bahdanau", "attention": "mlp"},
    "luong": {"type": "luong", "attention": "general", "input_feeding": True, "tie_embeddings": True},
    "luong_no_feeding": {"type": "luong", "attention": "dot", "input_feeding": False, "hidden_size": 16},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """Tiny models run fastest on one thread, and the machine's cores may be busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab(train_sentencepiece([*WORDS, *LINES] * 5, "unigram", 40))


def write_model(path: Path, vocab: Vocab, model: ModelConfig, shortlist: bool = False) -> Path:
    """A seeded untrained model with sharpened weights (so that its choices are far from
    ties), saved as a checkpoint."""
    torch.manual_seed(0)
    config = RunConfig(model=model, search=SearchConfig(beam_size=3, max_length_b=4, batch_size=3))
    net = build_model(model, len(vocab), len(vocab))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    table = None
    if shortlist:
        g = torch.Generator().manual_seed(0)
        translations = torch.randint(4, len(vocab), (len(vocab), 6), generator=g, dtype=torch.int32)
        table = Shortlist(torch.arange(len(vocab) - 1, 3, -1, dtype=torch.int32), translations)
    save_checkpoint(path, config, net.eval(), vocab, vocab, shortlist=table)
    return path


def model_config(decoder: dict[str, Any], cell: str = "gru", **encoder: Any) -> ModelConfig:
    dec = {"embedding_dim": 8, "hidden_size": 8, "output_size": 8, "num_layers": 2, "cell": cell, **decoder}
    return ModelConfig(
        encoder=EncoderConfig(cell=cell, num_layers=2, **{**SMALL, **encoder}), decoder=DecoderConfig(**dec)
    )


def assert_parity(
    checkpoint: Path, directory: Path, vocab: Vocab, search: SearchConfig, attention: bool, tol: float = 1e-4
) -> None:
    """The exported runtime's hypotheses equal the torch search's on LINES: same ids, same
    n-best order, close scores, per-piece log-probabilities and attention (within ``tol``)."""
    loaded = load_checkpoint(checkpoint)
    ids = vocab.encode(LINES)
    torch_hyps = translate_ids(
        loaded.model, ids, search, vocab, vocab, torch.device("cpu"), attention, shortlist=loaded.shortlist
    )
    runtime = ExportedTranslator.load(directory, threads=1)
    onnx_hyps = runtime.search_ids(ids, search, attention)
    for expected, got in zip(torch_hyps, onnx_hyps, strict=True):
        assert [h.tokens for h in got] == [h.tokens for h in expected]
        for e, g in zip(expected, got):
            assert g.score == pytest.approx(e.score, rel=tol, abs=tol)
            assert g.log_prob == pytest.approx(e.log_prob, rel=tol, abs=tol)
            assert np.allclose(g.token_log_probs, e.token_log_probs, rtol=tol, atol=tol)
            assert (g.attention is None) == (e.attention is None)
            if e.attention is not None:
                assert np.allclose(g.attention, e.attention.numpy(), atol=tol)


@pytest.fixture(scope="module", params=list(DECODERS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, vocab: Vocab) -> Any:
    """(checkpoint, export directory) of a tiny model of each decoder type."""
    tmp = tmp_path_factory.mktemp(request.param)
    checkpoint = write_model(tmp / "model.pt", vocab, model_config(DECODERS[request.param]))
    export_model(checkpoint, tmp / "export")
    return checkpoint, tmp / "export"


@pytest.mark.parametrize(
    "search",
    [
        SearchConfig(beam_size=1, max_length_b=4, batch_size=3),
        SearchConfig(beam_size=3, n_best=2, max_length_b=4, batch_size=3),
        SearchConfig(beam_size=4, n_best=4, length_penalty="average", min_length=2, batch_size=2),
        SearchConfig(beam_size=2, length_penalty="none", max_length_a=0.5, max_length_b=1, batch_size=7),
    ],
    ids=["greedy", "beam3_nbest2", "beam4_average_min_length", "beam2_none_short"],
)
def test_decoders_match_torch(exported: tuple[Path, Path], vocab: Vocab, search: SearchConfig) -> None:
    checkpoint, directory = exported
    assert_parity(checkpoint, directory, vocab, search, attention=True)


@pytest.mark.parametrize(
    ("cell", "decoder_cell", "bridge", "options"),
    [
        ("rnn", "rnn", "mean", {}),
        ("lstm", "lstm", "tanh", {}),
        ("lstm_peephole", "lstm_peephole", "zero", {}),
        ("gru", "gru", "last", {"dropout_type": "variational", "residual": True}),
        ("gru", "layernorm_lstm", "tanh", {}),
        ("lstm", "lstmp", "tanh", {"proj_size": 4}),
    ],
)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_cells_match_torch(
    tmp_path: Path, vocab: Vocab, cell: str, decoder_cell: str, bridge: str, options: dict[str, Any]
) -> None:
    """Each exportable cell, and the loop layers (variational dropout) and residual stacks
    that run in place of torch's recurrent modules, in the encoder and the decoder; the
    decoder's single step exports with the cells the encoder cannot have too."""
    encoder = {k: v for k, v in options.items() if k != "proj_size"}
    decoder = {"type": "bahdanau", "hidden_size": 16, "cell": decoder_cell, **options}
    config = model_config(decoder, cell, **encoder)
    checkpoint = write_model(tmp_path / "model.pt", vocab, ModelConfig(config.encoder, config.decoder, bridge))
    export_model(checkpoint, tmp_path / "export")
    tol = 1e-3 if decoder_cell.startswith("layernorm") else 1e-4  # normalising small states amplifies rounding
    for search in (SearchConfig(beam_size=1, batch_size=3), SearchConfig(beam_size=3, n_best=3, batch_size=3)):
        assert_parity(checkpoint, tmp_path / "export", vocab, search, attention=True, tol=tol)


def test_shortlist_matches_torch(tmp_path: Path, vocab: Vocab) -> None:
    checkpoint = write_model(tmp_path / "model.pt", vocab, model_config(DECODERS["luong"]), shortlist=True)
    info = export_model(checkpoint, tmp_path / "export")
    assert info["shortlist"] == "shortlist.npz" and "decoder_step_shortlist" in info["graphs"]
    for beam in (1, 3):
        search = SearchConfig(beam_size=beam, batch_size=3, shortlist=2, shortlist_frequent=5)
        assert_parity(checkpoint, tmp_path / "export", vocab, search, attention=True)


@pytest.mark.parametrize("exported", ["context"], indirect=True)
def test_shortlist_needs_a_table(exported: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="no shortlist table"):
        ExportedTranslator.load(exported[1], shortlist=2)


@pytest.mark.parametrize("cell", ["layernorm_gru", "lstmp"])
def test_refused_cell_names_itself(tmp_path: Path, vocab: Vocab, capsys: pytest.CaptureFixture[str], cell: str) -> None:
    extra = {"proj_size": 4} if cell == "lstmp" else {}
    config = ModelConfig(
        encoder=EncoderConfig(**SMALL, cell=cell, **extra),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8, cell=cell, **extra),
    )
    checkpoint = write_model(tmp_path / "model.pt", vocab, config)
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "export")]) == 2
    err = capsys.readouterr().err
    assert f"model.encoder.cell {cell} cannot be exported" in err and "rnn, gru, lstm, lstm_peephole" in err
    with pytest.raises(CheckpointError, match=cell):
        export_model(checkpoint, tmp_path / "export")


@pytest.mark.parametrize("exported", ["luong"], indirect=True)
def test_runtime_imports_no_torch(exported: tuple[Path, Path]) -> None:
    """A fresh interpreter translates and scores with the runtime, and torch never loads."""
    code = (
        "import sys\n"
        "from seq2seq.export.runtime import ExportedTranslator\n"
        f"t = ExportedTranslator.load({str(exported[1])!r}, beam_size=2)\n"
        f"out = t.translate({LINES!r})\n"
        "t.score([('ein Hund', 'Hund ein')])\n"
        "assert len(out) == %d, out\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    ) % len(LINES)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("exported", ["luong"], indirect=True)
def test_translate_model_command_imports_no_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    code = (
        "import sys\n"
        "from seq2seq.cli import main\n"
        f"assert main(['translate', '--model', {str(exported[1])!r}, '--input', {str(source)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == len(LINES)


def test_translations_and_scores_match_the_api(exported: tuple[Path, Path]) -> None:
    """Translator.load(DIR) is the runtime, answering as Translator.load(CHECKPOINT) does."""
    from seq2seq.api import Translator

    checkpoint, directory = exported
    torch_side, onnx_side = Translator.load(checkpoint, kernels=False, threads=1), Translator.load(directory, threads=1)
    assert isinstance(onnx_side, ExportedTranslator)
    for beam in (1, 3):
        expected = torch_side.translate(LINES, beam_size=beam, n_best=beam, return_attention=True)
        got = onnx_side.translate(LINES, beam_size=beam, n_best=beam, return_attention=True)
        for e_list, g_list in zip(expected, got, strict=True):
            assert [(g.text, g.tokens, g.source_tokens) for g in g_list] == [
                (e.text, e.tokens, e.source_tokens) for e in e_list
            ]
            for e, g in zip(e_list, g_list):
                assert g.score == pytest.approx(e.score, abs=1e-4)
                assert (g.attention is None) == (e.attention is None)
    pairs = [(line, " ".join(reversed(line.split()))) for line in LINES]
    for e, g in zip(torch_side.score(pairs), onnx_side.score(pairs), strict=True):
        assert g.tokens == e.tokens and len(g.token_log_probs) == len(e.token_log_probs)
        assert g.log_prob == pytest.approx(e.log_prob, abs=1e-4)
    assert onnx_side.source_lengths(LINES) == torch_side.source_lengths(LINES)
    same = {"src_lang", "tgt_lang", "decoder", "attention", "encoder_cell", "decoder_cell", "parameters", "vocab_sizes"}
    assert {k: onnx_side.info[k] for k in same} == {k: torch_side.info[k] for k in same}
    assert set(torch_side.info) <= set(onnx_side.info)
    json.dumps(onnx_side.info)


def test_int8_graphs_load_and_translate(tmp_path: Path, vocab: Vocab, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_model(tmp_path / "model.pt", vocab, model_config(DECODERS["luong"]))
    args = ["export", str(checkpoint), "--output", str(tmp_path / "export"), "--int8"]
    assert main(args) == 0
    assert "encoder.int8.onnx" in capsys.readouterr().out
    info = json.loads((tmp_path / "export" / "model.json").read_text())
    assert info["source_checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert {"torch", "seq2seq", "onnx_opset"} <= set(info["versions"])
    assert all((tmp_path / "export" / graph["int8"]).is_file() for graph in info["graphs"].values())
    translator = ExportedTranslator.load(tmp_path / "export", precision="int8")
    for beam in (1, 3):
        out = translator.translate(LINES, beam_size=beam)
        assert len(out) == len(LINES) and all(len(n) == 1 for n in out)
        assert out[LINES.index("")][0].text == ""
    with pytest.raises(ConfigError, match="no int8 graphs"):
        ExportedTranslator.load(write_export(tmp_path / "fp32", checkpoint), precision="int8")


def write_export(directory: Path, checkpoint: Path) -> Path:
    export_model(checkpoint, directory)
    return directory


# damage -> what the error message names
DAMAGES: dict[str, tuple[Any, str]] = {
    "no_directory": (lambda d: shutil.rmtree(d), "no such export directory"),
    "no_model_json": (lambda d: (d / "model.json").unlink(), "model.json: missing"),
    "bad_json": (lambda d: (d / "model.json").write_text("{not json"), "model.json: not a readable"),
    "other_version": (
        lambda d: _edit_json(d, lambda info: info.update(format_version=99)),
        "model.json: format_version 99",
    ),
    "missing_key": (lambda d: _edit_json(d, lambda info: info.pop("graphs")), "lacks the key 'graphs'"),
    "no_graph": (lambda d: (d / "decoder_step.onnx").unlink(), "decoder_step.onnx: missing"),
    "truncated_graph": (
        lambda d: (d / "encoder.onnx").write_bytes((d / "encoder.onnx").read_bytes()[:100]),
        "encoder.onnx: not a readable ONNX graph",
    ),
    "no_spm": (lambda d: (d / "spm.model").unlink(), "spm.model: missing"),
    "bad_spm": (lambda d: (d / "spm.model").write_bytes(b"junk"), "spm.model: not a readable"),
}


def _edit_json(directory: Path, change: Any) -> None:
    info = json.loads((directory / "model.json").read_text())
    change(info)
    (directory / "model.json").write_text(json.dumps(info))


@pytest.mark.parametrize("exported", ["luong"], indirect=True)
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_export_directory(exported: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "export"
    shutil.copytree(exported[1], directory)
    spoil, message = DAMAGES[damage]
    spoil(directory)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        ExportedTranslator.load(directory)


@pytest.mark.parametrize("exported", ["bahdanau"], indirect=True)
def test_translate_model_flag_equals_checkpoint(
    exported: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`seq2seq translate --model DIR` writes what `--checkpoint` writes, byte for byte."""
    checkpoint, directory = exported
    source = tmp_path / "in.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    for flags in (["--beam-size", "1"], ["--beam-size", "3", "--n-best", "2"]):
        outputs = []
        for model in (["--checkpoint", str(checkpoint), "--kernels", "false"], ["--model", str(directory)]):
            out = tmp_path / "out.txt"
            assert main(["translate", *model, "--input", str(source), "--output", str(out), *flags]) == 0
            outputs.append(out.read_bytes())
        assert outputs[0] == outputs[1] and outputs[0].count(b"\n") >= len(LINES)
    records = []
    for i, model in enumerate((["--checkpoint", str(checkpoint), "--kernels", "false"], ["--model", str(directory)])):
        attention = tmp_path / f"attention{i}"
        assert main(["translate", *model, "--input", str(source), "--attention-dir", str(attention)]) == 0
        records.append([json.loads(f.read_text()) for f in sorted(attention.iterdir())])
    assert len(records[0]) == len(records[1]) == len(LINES) - 1  # the empty line has none
    for expected, got in zip(*records):
        assert [got[k] for k in ("line", "source", "target")] == [expected[k] for k in ("line", "source", "target")]
        assert np.allclose(got["weights"], expected["weights"], atol=1e-4)
    capsys.readouterr()
    both = ["--checkpoint", str(checkpoint), "--model", str(directory)]
    assert main(["translate", *both, "--input", str(source)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["translate", "--checkpoint", str(checkpoint), "--int8", "--input", str(source)]) == 2
    assert "--int8" in capsys.readouterr().err
    assert main(["translate", "--model", str(directory), "--int8", "--input", str(source)]) == 2
    assert "no int8 graphs; export with --int8" in capsys.readouterr().err


@pytest.mark.parametrize("exported", ["context"], indirect=True)
def test_missing_onnxruntime_names_the_extra(exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(MissingExtraError, match=re.escape("seq2seq-rnn[onnx]")):
        ExportedTranslator.load(exported[1])


@pytest.mark.parametrize("exported", ["luong"], indirect=True)
def test_the_guide_example_runs_without_torch(exported: tuple[Path, Path]) -> None:
    """The Python block of the guide's export section, on a tiny export, in a fresh
    interpreter that never imports torch."""
    guide = (ROOT / "docs/guide.md").read_text(encoding="utf-8")
    section = guide.split("## Exporting to ONNX", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    code = block.replace("runs/quickstart/onnx", str(exported[1]))
    code += "import sys\nassert 'torch' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_runtime_modules_import_no_torch_statically() -> None:
    """The runtime's modules, and the package __init__ files above them, import only numpy,
    onnxruntime, sentencepiece, the standard library and the torch-free seq2seq modules."""
    allowed_seq2seq = {"seq2seq.errors", "seq2seq.config", "seq2seq.schema", "seq2seq.outputs", "seq2seq.export.search"}
    allowed_seq2seq |= {"seq2seq.export.directory", "seq2seq.source_limit"}
    for name in ("runtime", "search", "directory", "__init__"):
        path = ROOT / "seq2seq" / "export" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            modules += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for module in modules:
                top = module.split(".")[0]
                if top == "seq2seq":
                    assert module in allowed_seq2seq, f"{path.name} imports {module}"
                else:
                    assert top in {"numpy", "onnxruntime", "sentencepiece"} | sys.stdlib_module_names, module


def test_topk_sorts_what_a_full_sort_does() -> None:
    """The beam search's selection (only the entries at or above the best beam's k-th are
    sorted) gives the k largest values of a full sort, with their indices where values are
    distinct; rows at a length limit (one finite entry per beam) and ties included."""
    from seq2seq.export.search import _topk

    rng = np.random.default_rng(0)
    for trial in range(300):
        n, vocab_size, width = (int(v) for v in rng.integers(1, [6, 30, 5], endpoint=True))
        x = rng.normal(size=(n, width * vocab_size)).astype(np.float32)
        x[rng.random(x.shape) < rng.random() * 0.9] = -np.inf
        if trial % 3 == 0:
            x = np.round(x, 1)  # ties
        k = int(rng.integers(1, min(10, width * vocab_size), endpoint=True))
        values, ids = _topk(x, k, head=vocab_size)
        assert np.array_equal(values, -np.sort(-x, axis=1)[:, :k])
        assert np.array_equal(np.take_along_axis(x, ids, axis=1), values)
        assert all(len(set(row)) == k for row in ids.tolist())


@pytest.mark.parametrize("exported", ["context"], indirect=True)
def test_max_source_length_as_the_api(exported: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    from seq2seq.api import Translator
    from seq2seq.errors import DataError

    checkpoint, directory = exported
    torch_side = Translator.load(checkpoint, kernels=False, threads=1, max_source_length=3)
    onnx_side = ExportedTranslator.load(directory, threads=1, max_source_length=3)
    assert onnx_side.source_lengths(LINES) == torch_side.source_lengths(LINES)
    expected, got = torch_side.translate(LINES), onnx_side.translate(LINES)
    assert [n[0].source_tokens for n in got] == [n[0].source_tokens for n in expected]
    assert [n[0].text for n in got] == [n[0].text for n in expected]
    assert "line 2:" in caplog.text and "max_source_length (3)" in caplog.text
    refusing = ExportedTranslator.load(directory, max_source_length=3, long_source="refuse")
    with pytest.raises(DataError, match=r"line 1: .* more than search\.max_source_length"):
        refusing.translate(LINES)


@pytest.mark.parametrize("exported", ["context"], indirect=True)
def test_export_writes_into_new_or_export_directories_only(
    exported: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, _ = exported
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "notes")]) == 2
    assert "holds no export" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    for _ in range(2):  # again over its own export
        assert main(["export", str(checkpoint), "--output", str(tmp_path / "export")]) == 0
    assert ExportedTranslator.load(tmp_path / "export").translate(["ein Hund"])[0][0].tokens
