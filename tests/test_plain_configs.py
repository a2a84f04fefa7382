"""With the kernels switched off (training.kernels, search.kernels), every shipped config
trains a few steps and decodes on the plain model of seq2seq.models alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.cli import main
from seq2seq.train import loop

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("the kernels were switched off, yet accelerate() was called")


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_config_trains_and_decodes_without_kernels(
    config: Path, toy_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "accelerate", _refuse)
    overrides = {
        "data.src_lang": "src",
        "data.tgt_lang": "tgt",
        "data.train": f"{{format: text, path: {toy_corpus}/train}}",
        "data.dev": f"{{format: text, path: {toy_corpus}/dev}}",
        "data.test": "null",
        "data.subwords.vocab_size": "48",
        "data.batch_tokens": "200",
        "data.batch_sentences": "0",
        "training.max_steps": "2",
        "training.max_minutes": "0",
        "training.validate_every": "2",
        "training.threads": "1",
        "training.device": "cpu",
        "training.precision": "fp32",
        "training.kernels": "false",
        "training.compile": "none",
        "search.kernels": "false",
        "search.compile": "none",
        "search.shortlist": "0",
    }
    run = tmp_path / "run"
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    assert main(["train", str(config), "--run-dir", str(run), *sets]) == 0
    source = tmp_path / "in.txt"
    source.write_text("ein zwei drei\nHund Katze\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    args = ["translate", "--checkpoint", str(run / "best.pt"), "--input", str(source), "--output", str(out)]
    monkeypatch.setattr("seq2seq.kernels.accelerate", _refuse)
    assert main([*args, "--kernels", "false", "--beam-size", "2", "--device", "cpu"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
