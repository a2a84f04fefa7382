"""Command-line paths a user hits when something is off: flags checked before any checkpoint
is loaded, unreadable inputs, evaluate's two sources of references, Ctrl-C (exit code 130,
nothing half-written) and --overwrite. Most use an untrained checkpoint written in the
test; the ones that train are marked slow."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY, data_overrides, write_toy_corpus

from seq2seq.checkpoint import read_checkpoint, save_checkpoint, write_checkpoint
from seq2seq.cli import main
from seq2seq.config import (
    CorpusConfig,
    DataConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    RunConfig,
    SearchConfig,
    config_from_dict,
)
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.models import build_model

MISSING = "/nonexistent/model.pt"  # a checkpoint that is never there: checks must come first


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def checkpoint(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model whose config names the toy corpus as dev and as test set."""
    lines = [*(corpus / "train.src").read_text().splitlines(), *(corpus / "train.tgt").read_text().splitlines()]
    vocab = Vocab(train_sentencepiece(lines, "unigram", 40))
    split = CorpusConfig(format="text", path=f"{corpus}/dev")
    config = RunConfig(
        data=DataConfig(src_lang="src", tgt_lang="tgt", train=split, dev=split, test=split),
        model=ModelConfig(
            encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
            decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8),
        ),
        search=SearchConfig(beam_size=2, max_length_b=5, batch_size=16),
    )
    torch.manual_seed(0)
    model = build_model(config.model, len(vocab), len(vocab), padding_idx=vocab.pad_id)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, config, model, vocab, vocab)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# --- cheap checks first -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--beam-size", "2", "--n-best", "3"], "search.n_best: 3 must be in 1..search.beam_size (2)"),
        (["--workers", "0"], "argument --workers: 0 is outside [1, inf]"),
        (["--batch-size", "0"], "argument --batch-size: 0 is outside [1, inf]"),
        (["--threads", "-1"], "argument --threads: -1 is outside [0, inf]"),
        (["--beam-size", "two"], "argument --beam-size: expected an integer, got 'two'"),
        (["--shortlist", "101"], "argument --shortlist: 101 is outside [0, 100]"),
    ],
)
@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_bad_flags_fail_before_any_checkpoint_is_loaded(
    command: str, flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--src", TINY, "--ref", TINY] if command == "evaluate" else []  # readable, equal line counts
    code, _, err = run_cli([command, "--checkpoint", MISSING, *flags, *extra], capsys)
    assert code == 2 and needle in err, err
    assert MISSING not in err  # the checkpoint was never opened


def test_n_best_above_the_checkpoints_beam_size(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--n-best alone meets the checkpoint's search.beam_size (2) once that is loaded."""
    code, _, err = run_cli(["translate", "--checkpoint", str(checkpoint), "--n-best", "3"], capsys)
    assert code == 2 and "search.n_best: 3 must be in 1..search.beam_size (2)" in err


def test_workers_and_n_best_within_bounds_translate(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("ein Hund\nzwei Katze drei\n", encoding="utf-8")
    args = ["translate", "--checkpoint", str(checkpoint), "--input", str(src)]
    code, out, err = run_cli([*args, "--n-best", "2", "--workers", "2", "--batch-size", "1"], capsys)
    assert code == 0, err
    assert [line.split(" ||| ")[0] for line in out.splitlines()] == ["0", "0", "1", "1"]


@pytest.mark.parametrize("command", ["translate", "score"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_input_is_named(
    command: str, kind: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.txt" if kind == "missing" else tmp_path
    out = tmp_path / "out.txt"
    code, _, err = run_cli(
        [command, "--checkpoint", str(checkpoint), "--input", str(path), "--output", str(out)], capsys
    )
    reason = "No such file or directory" if kind == "missing" else "Is a directory"
    assert code == 2 and f"{path}: cannot read: {reason}" in err, err
    assert not out.exists()


# --- evaluate -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["dev", "test"])
def test_evaluate_split_reads_the_checkpoints_corpus(
    split: str, checkpoint: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = tmp_path / "hyp.txt"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--split", split, "--json", "--output", str(hyp)]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert set(json.loads(out)) == {"bleu", "chrf", "ter", "signatures"}
    n_dev = len((corpus / "dev.src").read_text(encoding="utf-8").splitlines())
    assert len(hyp.read_text(encoding="utf-8").splitlines()) == n_dev
    # The same corpus through --src/--ref scores the same.
    code, out_files, _ = run_cli(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--src",
            f"{corpus}/dev.src",
            "--ref",
            f"{corpus}/dev.tgt",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(out_files) == json.loads(out)


def test_evaluate_split_that_the_config_lacks(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = read_checkpoint(checkpoint)
    config = dataclasses.replace(stored.config, data=dataclasses.replace(stored.config.data, test=None))
    no_test = tmp_path / "no_test.pt"
    write_checkpoint(no_test, dataclasses.replace(stored, config=config))
    code, _, err = run_cli(["evaluate", "--checkpoint", str(no_test), "--split", "test"], capsys)
    assert code == 2 and "no data.test" in err


def test_evaluate_mismatched_and_missing_references(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short.tgt"
    short.write_text("".join((corpus / "dev.tgt").read_text(encoding="utf-8").splitlines(True)[:-1]), encoding="utf-8")
    code, _, err = run_cli(
        ["evaluate", "--checkpoint", MISSING, "--src", f"{corpus}/dev.src", "--ref", str(short)], capsys
    )
    assert code == 2 and f"{corpus}/dev.src has 20 lines but {short} has 19" in err, err
    missing = tmp_path / "nope.tgt"
    code, _, err = run_cli(
        ["evaluate", "--checkpoint", MISSING, "--src", f"{corpus}/dev.src", "--ref", str(missing)], capsys
    )
    assert code == 2 and f"{missing}: cannot read: No such file or directory" in err, err
    code, _, err = run_cli(["evaluate", "--checkpoint", MISSING, "--src", f"{corpus}/dev.src"], capsys)
    assert code == 2 and "needs --src and --ref, or --split" in err


# --- Ctrl-C -------------------------------------------------------------------------------


def interrupt_when(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> tuple[int, str]:
    """Send SIGINT (Ctrl-C) once ``ready()``; return the exit code and stderr."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()[1]}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_during_translation_leaves_the_old_output(checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "many.txt"
    src.write_text("ein zwei drei vier Hund Katze Baum\n" * 200_000, encoding="utf-8")
    out = tmp_path / "out" / "translations.txt"
    out.parent.mkdir()
    out.write_text("the previous translations\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "seq2seq", "translate", "--checkpoint", str(checkpoint), "--input", str(src)]
    proc = subprocess.Popen(
        [*cmd, "--output", str(out), "--threads", "1"], stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    # The temporary output appears once decoding has begun.
    code, err = interrupt_when(proc, lambda: any(out.parent.glob(".*.tmp")), "decoding began")
    assert code == 130 and "seq2seq translate: interrupted" in err, err
    assert out.read_text(encoding="utf-8") == "the previous translations\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["translations.txt"]  # no temporary file left


@pytest.mark.slow
def test_ctrl_c_during_training_leaves_whole_files(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    sets = ["--set", "training.max_steps=100000", "--set", "training.log_every=1", "--set", "training.save_every=2"]
    cmd = [sys.executable, "-m", "seq2seq", "train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    metrics = run / "metrics.jsonl"

    def steps_done() -> int:
        return len(metrics.read_text(encoding="utf-8").splitlines()) if metrics.exists() else 0

    code, err = interrupt_when(proc, lambda: steps_done() >= 12, "step 12")
    assert code == 130 and "seq2seq train: interrupted" in err, err
    assert not list(run.glob(".*.tmp")), "a temporary file was left"
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")))
    assert config.training.max_steps == 100000
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]  # every line whole
    assert records and all("step" in r for r in records)
    state = read_checkpoint(run / "last.pt").train_state  # a whole checkpoint, resumable
    assert state is not None and state["progress"]["step"] >= 2
    assert (
        main(
            [
                "train",
                TINY,
                "--run-dir",
                str(run),
                "--resume",
                *data_overrides(corpus),
                "--set",
                "training.max_steps=14",
            ]
        )
        == 0
    )


# --- --overwrite --------------------------------------------------------------------------


@pytest.mark.slow
def test_overwrite_removes_the_whole_previous_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    common = ["train", TINY, "--run-dir", str(run), *data_overrides(corpus), "--set", "training.validate_every=3"]
    assert main([*common, "--set", "training.max_steps=6", "--set", "training.keep_checkpoints=2"]) == 0
    (run / "tensorboard").mkdir(exist_ok=True)
    (run / "tensorboard" / "events.out.tfevents.old").write_bytes(b"old events")
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    assert (run / "ckpt-0000006.pt").exists()

    assert main([*common, "--set", "training.max_steps=3", "--overwrite"]) == 0
    assert not (run / "notes.txt").exists() and not list(run.glob("ckpt-*.pt"))
    assert not (run / "tensorboard" / "events.out.tfevents.old").exists()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert max(steps) == 3  # only the new run's records
    assert read_checkpoint(run / "last.pt").train_state["progress"]["step"] == 3  # type: ignore[index]

    # A non-empty directory that holds no run is left alone.
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "thesis.tex").write_text("precious", encoding="utf-8")
    capsys.readouterr()
    assert main(["train", TINY, "--run-dir", str(other), *data_overrides(corpus), "--overwrite"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text(encoding="utf-8") == "precious"


def test_metrics_file_and_tensorboard_are_closed_when_training_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or any error) inside the loop still closes what the trainer opened."""
    from seq2seq.config import load_config
    from seq2seq.train import loop, run

    opened: list[tuple[object, object]] = []

    def interrupted_run(self: loop.Trainer) -> None:
        self.log_metrics({"step": 1, "loss": 1.0})
        opened.append((self.metrics, self.tensorboard))
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "run", interrupted_run)
    corpus = write_toy_corpus(tmp_path / "corpus")
    config = load_config(TINY, [f"data.train.path={corpus}/train", f"data.dev.path={corpus}/dev"])
    with pytest.raises(KeyboardInterrupt):
        run.train(config, tmp_path / "run")
    ((metrics, writer),) = opened
    assert metrics is not None and metrics.closed  # type: ignore[attr-defined]
    if writer is not None:  # tensorboard installed: its event files are flushed and closed
        assert writer.all_writers is None  # type: ignore[attr-defined]
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8")) == {"step": 1, "loss": 1.0}
