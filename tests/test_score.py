"""A trained checkpoint's phrase uses. `seq2seq score`: batched teacher-forced scores equal
force-decoding each pair alone, step by step; lines keep their order, count and fields.
`scripts/phrase_map.py`: a PNG of the encoder's phrase representations."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, WORDS, data_overrides, load_script, write_toy_corpus

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import main
from seq2seq.score import pair_token_log_probs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("score")
    corpus = write_toy_corpus(tmp / "corpus", n_train=120, n_dev=8)
    run = tmp / "run"
    sets = ["--set", "training.max_steps=4", "--set", "model.encoder.cell=lstm", "--set", "model.decoder.num_layers=2"]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]) == 0
    return run / "best.pt"


def phrase(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))


def unpadded(path: Path, pairs: list[tuple[str, str]]) -> list[float]:
    """log p(target + EOS | source) of each pair without padding: pairs are scored in groups
    of equal source and equal target length, so no batch pads (one forward per pair would
    do the same, a thousand times slower)."""
    loaded = load_checkpoint(path)
    src = loaded.src_vocab.encode([s for s, _ in pairs])
    tgt = loaded.tgt_vocab.encode([t for _, t in pairs])
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(pairs)):
        groups.setdefault((len(src[i]), len(tgt[i])), []).append(i)
    scores = [0.0] * len(pairs)
    for group in groups.values():
        scored = pair_token_log_probs(
            loaded.model, [src[i] for i in group], [tgt[i] for i in group], loaded.tgt_vocab, torch.device("cpu"), 1000
        )
        for i, (total, _) in zip(group, scored):
            scores[i] = total
    return scores


def stepped(path: Path, pairs: list[tuple[str, str]]) -> list[float]:
    """The same for each pair alone, force-decoded one decoder step at a time as search runs
    the model."""
    loaded = load_checkpoint(path)
    model, sv, tv = loaded.model, loaded.src_vocab, loaded.tgt_vocab
    scores = []
    with torch.no_grad():
        for src, tgt in pairs:
            src_ids = torch.tensor([[*sv.encode([src])[0], sv.eos_id]])
            encoded = model.encode(src_ids, torch.tensor([src_ids.size(1)]))
            state, prev, total = model.init_state(encoded), torch.tensor([tv.bos_id]), 0.0
            for token in [*tv.encode([tgt])[0], tv.eos_id]:
                out = model.step(prev, state, encoded)
                total += float(out.log_probs[0, token])
                state, prev = out.state, torch.tensor([token])
            scores.append(total)
    return scores


@pytest.mark.slow
def test_phrase_table_scores_equal_each_pair_alone(checkpoint: Path, tmp_path: Path) -> None:
    rng = random.Random(0)
    lines = [f"{phrase(rng)} ||| {phrase(rng)} ||| 0.5 0.25 {i} ||| 0-0 ||| 1 1 1" for i in range(999)]
    lines.insert(500, "Hund |||  ||| 0.1")  # an empty target: EOS alone is scored
    table, out = tmp_path / "phrase-table", tmp_path / "scored"
    table.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["score", "--checkpoint", str(checkpoint), "--input", str(table), "--output", str(out)]
    assert main([*args, "--batch-size", "37", "--threads", "1"]) == 0
    scored = out.read_text(encoding="utf-8").splitlines()
    assert len(scored) == 1000
    tgt_vocab = load_checkpoint(checkpoint).tgt_vocab
    pairs, totals = [], []
    for before, after in zip(lines, scored):
        old, new = before.split(" ||| "), after.split(" ||| ")
        assert len(new) == len(old) and new[:2] == old[:2] and new[3:] == old[3:]
        *kept, total, per_token = new[2].split()
        assert kept == old[2].split()
        pairs.append((old[0], old[1]))
        totals.append(float(total))
        tokens = len(tgt_vocab.encode([old[1]])[0]) + 1
        assert float(per_token) == pytest.approx(float(total) / tokens, abs=1e-5)
    torch.testing.assert_close(torch.tensor(totals), torch.tensor(unpadded(checkpoint, pairs)), atol=1e-4, rtol=0)
    some = list(range(0, 1000, 100))
    expect = torch.tensor(stepped(checkpoint, [pairs[i] for i in some]))
    torch.testing.assert_close(torch.tensor([totals[i] for i in some]), expect, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_tsv_gets_two_columns(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("ein Hund\tdog one\textra\nzwei\tzwei\n", encoding="utf-8")
    assert main(["score", "--checkpoint", str(checkpoint), "--input", str(tsv), "--threads", "1"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[:-2] for r in rows] == [["ein Hund", "dog one", "extra"], ["zwei", "zwei"]]
    assert all(float(r[-2]) < 0 and float(r[-1]) < 0 for r in rows)


@pytest.mark.slow
def test_malformed_line_is_named(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table, out = tmp_path / "bad", tmp_path / "out"
    table.write_text("a ||| b ||| 1\nno separator here\n", encoding="utf-8")
    args = ["score", "--checkpoint", str(checkpoint), "--input", str(table), "--output", str(out)]
    assert main([*args, "--format", "moses", "--threads", "1"]) == 2
    assert f"{table}:2" in capsys.readouterr().err
    assert not out.exists()


def phrase_map() -> Any:
    return load_script("phrase_map")


@pytest.mark.slow
def test_phrase_map_draws_a_png(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    rng = random.Random(1)
    phrases, png = tmp_path / "phrases.txt", tmp_path / "map.png"
    phrases.write_text("".join(phrase(rng) + "\n" for _ in range(40)) + "\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["phrase_map.py", "--checkpoint", str(checkpoint), str(phrases), str(png)])
    assert phrase_map().main() == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_tsne_keeps_clusters_apart() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(15, 6, generator=g), torch.randn(15, 6, generator=g) + 20.0])
    y = phrase_map().tsne(x, perplexity=5.0, steps=300)
    nearest = torch.cdist(y, y).fill_diagonal_(float("inf")).argmin(1)
    assert torch.equal(nearest // 15, torch.arange(30) // 15)  # every neighbour from its own cluster
