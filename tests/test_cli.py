"""End to end through the command line: train -> translate -> evaluate, resume after a kill,
and clear errors for bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, data_overrides, seeded_rng, write_toy_corpus

from seq2seq.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_translate_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus)]) == 0
    for name in ("best.pt", "last.pt", "config.yaml", "spm.model", "metrics.jsonl"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"dev_bleu", "dev_ppl"} <= set(records[-1]) and records[-1]["step"] == 30

    lines = ["ein zwei drei", "", "Hund Katze Baum Haus"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    args = ["translate", "--checkpoint", str(run / "best.pt"), "--input", str(tmp_path / "in.txt")]
    assert main([*args, "--output", str(out), "--beam-size", "2"]) == 0
    translations = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(translations) == 3 and translations[1] == ""
    assert main([*args, "--output", str(out), "--beam-size", "2", "--precision", "bf16"]) == 0
    assert len(out.read_text(encoding="utf-8").split("\n")[:-1]) == 3  # bf16 autocast decoding

    capsys.readouterr()
    assert main([*args, "--beam-size", "2", "--n-best", "2"]) == 0
    nbest = capsys.readouterr().out.splitlines()
    assert [line.split(" ||| ")[0] for line in nbest] == ["0", "0", "1", "2", "2"]  # "" has one
    assert all(len(line.split(" ||| ")) == 3 for line in nbest)

    capsys.readouterr()
    ev = ["evaluate", "--checkpoint", str(run / "best.pt"), "--src", f"{corpus}/dev.src", "--ref", f"{corpus}/dev.tgt"]
    assert main([*ev, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"bleu", "chrf", "ter", "signatures"}
    assert "tok:13a" in scores["signatures"]["bleu"]

    # The checkpoint carries its shortlist table; --shortlist and --workers decode with it.
    short = tmp_path / "short.txt"
    fast = ["--output", str(short), "--beam-size", "2", "--shortlist", "3", "--workers", "2", "--batch-size", "1"]
    assert main([*args, *fast]) == 0
    assert len(short.read_text(encoding="utf-8").split("\n")[:-1]) == 3
    capsys.readouterr()
    assert main([*args, "--shortlist", "101"]) == 2
    assert "--shortlist: 101 is outside [0, 100]" in capsys.readouterr().err
    bare = torch.load(run / "best.pt", weights_only=True)
    del bare["shortlist"]  # as written before checkpoints had one
    torch.save(bare, tmp_path / "old.pt")
    old = ["translate", "--checkpoint", str(tmp_path / "old.pt"), "--input", str(tmp_path / "in.txt")]
    assert main([*old, "--shortlist", "3"]) == 2
    assert "has no shortlist table" in capsys.readouterr().err
    script = [sys.executable, str(ROOT / "scripts" / "add_shortlist.py"), str(tmp_path / "old.pt")]
    subprocess.run(script, check=True, capture_output=True)
    # The script's table is the one training counted: same output (in one process, too).
    assert main([*old, "--shortlist", "3", "--output", str(out), "--beam-size", "2", "--batch-size", "1"]) == 0
    assert out.read_text(encoding="utf-8") == short.read_text(encoding="utf-8")


def test_run_dir_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"precious")
    corpus = write_toy_corpus(tmp_path / "corpus")
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "model.encoder.cell=gruu"], "model.encoder.cell"),
        (["--set", "data.train.path=/nonexistent/corpus"], "/nonexistent/corpus"),
        (["--set", "training.precision=fp16", "--set", "training.device=cpu"], "fp16 needs a CUDA device"),
    ],
)
def test_bad_input_gives_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    assert main(["train", TINY, "--run-dir", str(tmp_path / "run"), *data_overrides(corpus), *args]) == 2
    assert needle in capsys.readouterr().err


def test_bad_checkpoint_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["translate", "--checkpoint", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(run / "last.pt", weights_only=True)
    return payload["model"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    common = [*data_overrides(corpus), "--set", "training.log_every=1"]
    straight = tmp_path / "straight"
    assert main(["train", TINY, "--run-dir", str(straight), *common]) == 0

    run = tmp_path / "killed"
    kill_at = seeded_rng("kill step").randint(6, 24)
    cmd = [sys.executable, "-m", "seq2seq", "train", TINY, "--run-dir", str(run), *common]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()] if metrics.exists() else []
        if steps and max(steps) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    assert main(["train", TINY, "--run-dir", str(run), "--resume", *common]) == 0

    a, b = final_weights(straight), final_weights(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_scripts_bleu_and_benchmark(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    bleu = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bleu.py"), f"{corpus}/dev.tgt", f"{corpus}/dev.tgt", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(bleu.stdout)["bleu"] == 100.0
    bench = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/bench/benchmark.py"),
            TINY,
            "--steps",
            "3",
            "--warmup",
            "1",
            "--decode-sentences",
            "8",
            "--json",
            *data_overrides(corpus),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(bench.stdout.splitlines()[-1])
    assert result["train_tokens_per_s"] > 0 and result["decode_sentences"] == 8
    assert {"peak_rss_mib", "device", "precision", "threads"} <= set(result)


@pytest.mark.slow
def test_benchmark_data_scale(tmp_path: Path) -> None:
    sets = ["--set", "data.num_proc=2", "--set", "data.subwords.input_sentence_size=500"]
    bench = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bench/benchmark.py"), TINY, "--data-scale", "2000", "--json", *sets],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    result = json.loads(bench.stdout.splitlines()[-1])
    assert result["pairs"] == 2000 and 0 < result["kept_pairs"] <= 2000 and result["num_proc"] == 2
    assert result["input_sentence_size"] == 500 and result["encode_pairs_per_s"] > 0
    assert result["seconds_to_first_step"] >= result["encode_seconds"] > 0
    assert list(tmp_path.iterdir()) == []  # corpus and datasets cache lived in a temporary directory


@pytest.mark.slow
def test_invalid_utf8_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), "--set", "training.max_steps=2"]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ein Hund\n\xff\xfe kaputt\n")
    out = tmp_path / "out.txt"
    assert main(["translate", "--checkpoint", str(run / "best.pt"), "--input", str(bad), "--output", str(out)]) == 2
    assert "UTF-8" in capsys.readouterr().err
    assert not out.exists()  # no half-written output


@pytest.mark.slow
def test_resume_refuses_another_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    common = ["--run-dir", str(run), *data_overrides(corpus)]
    assert main(["train", TINY, *common, "--set", "training.max_steps=5"]) == 0
    assert main(["train", TINY, *common, "--resume", "--set", "model.encoder.hidden_size=8"]) == 2
    assert "`model` section" in capsys.readouterr().err
    assert main(["train", TINY, *common, "--resume", "--set", "training.max_steps=8"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["train_state"]["progress"]["step"] == 8


@pytest.mark.slow
def test_attention_model_checkpoints_ensemble_and_attention_files(tmp_path: Path) -> None:
    """Luong attention end to end: kept checkpoints, an ensemble, attention files, averaging."""
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    attention = ["--set", "model.decoder.type=luong", "--set", "model.decoder.attention=general"]
    keep = ["--set", "training.keep_checkpoints=2", "--set", "training.validate_every=5"]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *attention, *keep]) == 0
    kept = sorted(p.name for p in run.glob("ckpt-*.pt"))
    assert kept == ["ckpt-0000025.pt", "ckpt-0000030.pt"]

    src = corpus / "dev.src"
    out, attn_dir = tmp_path / "out.txt", tmp_path / "attn"
    ckpts = [str(run / "best.pt"), str(run / "ckpt-0000025.pt")]
    args = ["translate", "--checkpoint", *ckpts, "--input", str(src), "--output", str(out)]
    assert main([*args, "--attention-dir", str(attn_dir)]) == 0
    lines = src.read_text(encoding="utf-8").splitlines()
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(lines)
    files = sorted(attn_dir.glob("*.json"))
    assert [f.name for f in files] == [f"{i:06d}.json" for i in range(len(lines))]
    record = json.loads(files[3].read_text())
    assert record["line"] == 3 and record["source"][-1] == "</s>" and record["target"][-1] == "</s>"
    weights = torch.tensor(record["weights"])
    assert weights.shape == (len(record["target"]), len(record["source"]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(record["target"])), atol=1e-4, rtol=0)

    averaged = tmp_path / "avg.pt"
    assert main(["average", "--run-dir", str(run), "--last", "2", "--output", str(averaged)]) == 0
    assert main(["translate", "--checkpoint", str(averaged), "--input", str(src), "--output", str(out)]) == 0


@pytest.mark.slow
def test_ensemble_of_different_vocabularies_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for seed in (0, 1):
        corpus = write_toy_corpus(tmp_path / f"corpus{seed}", seed=seed, n_train=100 + 50 * seed)
        run = tmp_path / f"run{seed}"
        steps = ["--set", "training.max_steps=5", "--set", "data.subwords.vocab_size=40"]
        assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *steps]) == 0
        runs.append(str(run / "best.pt"))
    src = tmp_path / "corpus0" / "dev.src"
    assert main(["translate", "--checkpoint", *runs, "--input", str(src)]) == 2
    assert "vocabulary" in capsys.readouterr().err


@pytest.mark.slow
def test_attention_dir_needs_an_attention_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), "--set", "training.max_steps=5"]) == 0
    args = ["translate", "--checkpoint", str(run / "best.pt"), "--input", str(corpus / "dev.src")]
    assert main([*args, "--attention-dir", str(tmp_path / "a")]) == 2
    assert "without attention" in capsys.readouterr().err
    assert main([*args, "--compile", "default"]) == 2
    assert "--compile default" in capsys.readouterr().err
