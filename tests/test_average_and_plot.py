"""`seq2seq average` and `seq2seq plot-attention`: the average is the element-wise mean and
translates; incompatible inputs and malformed attention files give exit code 2 and a message
naming the file and the key; nothing half-written is left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import translate_lines

from seq2seq.average import average_checkpoints
from seq2seq.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from seq2seq.cli import main
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, RunConfig
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.errors import CheckpointError
from seq2seq.models import build_model

SENTENCES = [f"ein {w} sieht {v} im Park" for w in ("Hund", "Mann", "Kind") for v in ("Vögel", "Bälle")] * 5


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab(train_sentencepiece(SENTENCES, "unigram", 40))


def tiny_config(hidden_size: int = 8) -> RunConfig:
    return RunConfig(
        model=ModelConfig(
            encoder=EncoderConfig(cell="gru", embedding_dim=8, hidden_size=hidden_size, num_layers=1),
            decoder=DecoderConfig(cell="gru", embedding_dim=8, hidden_size=8, output_size=8, num_layers=1),
        )
    )


def save_tiny(path: Path, vocab: Vocab, seed: int, config: RunConfig | None = None) -> dict[str, torch.Tensor]:
    """A randomly initialised tiny model saved as a checkpoint; returns its weights."""
    config = config or tiny_config()
    torch.manual_seed(seed)
    model = build_model(config.model, len(vocab), len(vocab), padding_idx=vocab.pad_id)
    save_checkpoint(path, config, model, vocab, vocab, {"step": seed})
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_average_of_two_is_the_mean_and_translates(
    tmp_path: Path, vocab: Vocab, capsys: pytest.CaptureFixture[str]
) -> None:
    a = save_tiny(tmp_path / "a.pt", vocab, seed=1)
    b = save_tiny(tmp_path / "b.pt", vocab, seed=2)
    out = tmp_path / "avg.pt"
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--output", str(out)]) == 0
    assert "averaged 2 checkpoint(s)" in capsys.readouterr().out

    stored = read_checkpoint(out)
    assert stored.train_state is None
    assert stored.config == read_checkpoint(tmp_path / "a.pt").config
    assert stored.weights.keys() == a.keys()
    assert not torch.equal(a["generator.weight"], b["generator.weight"])  # two different models
    for key in a:
        torch.testing.assert_close(stored.weights[key], (a[key] + b[key]) / 2, msg=key)

    loaded = load_checkpoint(out)
    lines = ["ein Hund sieht Vögel", "", "ein Kind im Park"]
    results = list(translate_lines(loaded.model, lines, loaded.config.search, vocab, vocab, torch.device("cpu")))
    assert len(results) == 3 and all(isinstance(text, str) for n_best in results for text, _ in n_best)


def test_average_of_one_reproduces_it(tmp_path: Path, vocab: Vocab) -> None:
    weights = save_tiny(tmp_path / "a.pt", vocab, seed=3)
    assert main(["average", str(tmp_path / "a.pt"), "--output", str(tmp_path / "same.pt")]) == 0
    stored = read_checkpoint(tmp_path / "same.pt")
    for key, value in weights.items():
        assert torch.equal(stored.weights[key], value), key


def test_another_architecture_is_refused_by_key(
    tmp_path: Path, vocab: Vocab, capsys: pytest.CaptureFixture[str]
) -> None:
    save_tiny(tmp_path / "a.pt", vocab, seed=1)
    save_tiny(tmp_path / "wide.pt", vocab, seed=2, config=tiny_config(hidden_size=12))
    out = tmp_path / "avg.pt"
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "wide.pt"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.encoder.hidden_size" in err and "wide.pt" in err
    assert not out.exists()

    # Same config but a tensor of another shape (a hand-edited file): named by tensor key.
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["model"]["generator.bias"] = torch.zeros(3)
    torch.save(payload, tmp_path / "edited.pt")
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "edited.pt"), "--output", str(out)]) == 2
    assert "generator.bias" in capsys.readouterr().err
    assert not out.exists()


def test_integer_buffers_are_copied_and_must_agree(tmp_path: Path, vocab: Vocab) -> None:
    save_tiny(tmp_path / "a.pt", vocab, seed=1)
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    paths = []
    for i, count in enumerate((7, 7, 8)):
        payload["model"]["norm.num_batches_tracked"] = torch.tensor(count)
        paths.append(tmp_path / f"{i}.pt")
        torch.save(payload, paths[-1])
    assert average_checkpoints(paths[:2]).weights["norm.num_batches_tracked"].item() == 7
    with pytest.raises(CheckpointError, match=re.escape("norm.num_batches_tracked")):
        average_checkpoints(paths)


def test_run_dir_last_takes_the_highest_steps(tmp_path: Path, vocab: Vocab, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    weights = {step: save_tiny(run / f"ckpt-{step:07d}.pt", vocab, seed=step) for step in (100, 900, 1000)}
    save_tiny(run / "last.pt", vocab, seed=5)  # not a ckpt-*.pt: never picked
    out = tmp_path / "avg.pt"
    assert main(["average", "--run-dir", str(run), "--last", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "step 900" in printed and "step 1000" in printed and "step 100)" not in printed
    stored = read_checkpoint(out)
    for key in weights[100]:
        torch.testing.assert_close(stored.weights[key], (weights[900][key] + weights[1000][key]) / 2, msg=key)

    assert main(["average", "--run-dir", str(run), "--last", "4", "--output", str(out)]) == 2
    assert "found 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--output", "x.pt"], "give CKPT files"),
        (["a.pt", "--run-dir", "r", "--last", "1", "--output", "x.pt"], "not both"),
        (["--run-dir", "r", "--output", "x.pt"], "--last N"),
        (["a.pt", "--last", "2", "--output", "x.pt"], "--last goes with --run-dir"),
        (["missing.pt", "--output", "x.pt"], "missing.pt: no such checkpoint"),
    ],
)
def test_average_flags_are_checked(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["average", *args]) == 2
    assert needle in capsys.readouterr().err


def write_attention(path: Path, rows: int = 4, cols: int = 5) -> None:
    source = [f"▁s{j}" for j in range(cols - 1)] + ["</s>"]
    target = [f"▁t{i}" for i in range(rows - 1)] + ["</s>"]
    weights = [[(1.0 if j == min(i, cols - 1) else 0.0) for j in range(cols)] for i in range(rows)]
    path.write_text(json.dumps({"line": 0, "source": source, "target": target, "weights": weights}), encoding="utf-8")


def test_plot_attention_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    write_attention(tmp_path / "000000.json")
    out = tmp_path / "plots" / "000000.png"
    assert main(["plot-attention", str(tmp_path / "000000.json"), "--output", str(out), "--dpi", "50"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in out.parent.iterdir()) == ["000000.png"]  # no temporary file left


def test_malformed_attention_is_refused_by_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "000001.json"
    write_attention(bad)
    data = json.loads(bad.read_text(encoding="utf-8"))
    data["weights"][2] = data["weights"][2][:-1]  # one column short
    bad.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "x.png"
    assert main(["plot-attention", str(bad), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 2" in err
    assert not out.exists()

    # Through the command line too, with text that is not JSON; the command imports no torch.
    bad.write_text("{not json", encoding="utf-8")
    probe = (
        "import sys; from seq2seq.cli import main; code = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'plot-attention imported torch'; sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, "plot-attention", str(bad), "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and str(bad) in proc.stderr and "not valid JSON" in proc.stderr, proc.stderr


def test_missing_matplotlib_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_attention(tmp_path / "a.json")
    # A None entry in sys.modules makes the import raise ImportError, as if not installed.
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["plot-attention", str(tmp_path / "a.json"), "--output", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib is not installed" in err and "[plot]" in err
    assert not (tmp_path / "a.png").exists()
