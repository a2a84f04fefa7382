"""The Python API: `from seq2seq import Translator` is light, its output equals the
`seq2seq translate` / `score` commands' byte for byte, its fields hold together (per-token
log-probabilities sum to the total, attention rows to 1), it checks settings as the command
line does, and the user guide's example runs as written."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, data_overrides, write_toy_corpus, write_untrained_checkpoint

from seq2seq.cli import main
from seq2seq.errors import ConfigError, DataError, Seq2SeqError
from seq2seq.lines import read_lines
from seq2seq.outputs import PairScore, Translation
from seq2seq.search import length_penalty

ROOT = Path(__file__).resolve().parents[1]
LINES = ["ein Hund", "", "zwei Katze drei vier Baum", "Haus", "sechs sieben acht neun zehn Hund Katze", "drei"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=120, n_dev=8)


@pytest.fixture(scope="module")
def checkpoint(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "luong.pt", corpus, beam_size=3)


@pytest.fixture(scope="module")
def translator(checkpoint: Path):  # type: ignore[no-untyped-def]
    from seq2seq import Translator

    return Translator.load(checkpoint, device="cpu", threads=1)


def test_import_seq2seq_does_not_import_torch() -> None:
    code = (
        "import sys, seq2seq\n"
        "from seq2seq import Translation, PairScore, Seq2SeqError\n"
        "assert 'torch' not in sys.modules, 'import seq2seq imported torch'\n"
        "assert 'numpy' not in sys.modules, 'seq2seq.outputs imported numpy'\n"
        "from seq2seq import Translator\n"
        "assert 'torch' in sys.modules and Translator.__module__ == 'seq2seq.api'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    import seq2seq

    with pytest.raises(AttributeError, match="no attribute 'Translater'"):
        seq2seq.Translater  # noqa: B018


@pytest.mark.parametrize(("beam_size", "n_best"), [(1, 1), (3, 1), (3, 3)])
def test_api_equals_the_translate_command_byte_for_byte(
    checkpoint: Path, tmp_path: Path, beam_size: int, n_best: int
) -> None:
    from seq2seq import Translator

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    flags = ["--beam-size", str(beam_size), "--n-best", str(n_best), "--batch-size", "2", "--threads", "1"]
    assert main(["translate", "--checkpoint", str(checkpoint), "--input", str(src), "--output", str(out), *flags]) == 0

    t = Translator.load(checkpoint, device="cpu", threads=1, beam_size=beam_size, n_best=n_best, batch_size=2)
    results = t.translate(read_lines(src))
    if n_best == 1:
        expected = "".join(nbest[0].text + "\n" for nbest in results)
    else:  # the Moses n-best format
        expected = "".join(f"{i} ||| {h.text} ||| {h.score:.4f}\n" for i, nbest in enumerate(results) for h in nbest)
    assert out.read_bytes() == expected.encode("utf-8")
    assert len(results) == len(LINES) and all(len(n) == (1 if not line else n_best) for n, line in zip(results, LINES))


def test_translations_hold_together(translator) -> None:  # type: ignore[no-untyped-def]
    search = translator.search
    results = translator.translate(LINES, beam_size=3, n_best=2, return_attention=True)
    for line, nbest in zip(LINES, results):
        assert all(isinstance(h, Translation) for h in nbest)
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        for h in nbest:
            assert len(h.token_log_probs) == len(h.tokens) + 1
            assert math.fsum(h.token_log_probs) == pytest.approx(h.log_prob, abs=1e-4)
            assert all(lp <= 0.0 for lp in h.token_log_probs)
            if not line:
                assert h.text == "" and h.tokens == [] and h.source_tokens == [] and h.attention is None
                continue
            penalty = length_penalty(len(h.tokens) + 1, search.length_penalty, search.alpha)
            assert h.score == pytest.approx(h.log_prob / penalty, abs=1e-5)
            assert h.source_tokens == translator.src_vocab.pieces(translator.src_vocab.encode([line])[0])
            assert h.attention is not None and len(h.attention) == len(h.tokens) + 1
            assert all(len(row) == len(h.source_tokens) + 1 for row in h.attention)
            assert all(math.fsum(row) == pytest.approx(1.0, abs=1e-4) for row in h.attention)
    assert translator.translate(LINES[:1])[0][0].attention is None  # only when asked
    json.dumps([[dataclasses.asdict(h) for h in n] for n in results])  # plain data


def test_translate_iter_streams_in_input_order(translator) -> None:  # type: ignore[no-untyped-def]
    whole = translator.translate(LINES)
    streamed = translator.translate_iter(iter(LINES), chunk_lines=1)
    first = next(streamed)  # answered before the rest is read
    one_by_one = [translator.translate([line])[0] for line in LINES]
    for other in ([first, *streamed], one_by_one):  # a batch equals its sentences one by one
        assert [[(h.text, h.tokens, h.source_tokens) for h in n] for n in other] == [
            [(h.text, h.tokens, h.source_tokens) for h in n] for n in whole
        ]
        assert [h.log_prob for n in other for h in n] == pytest.approx([h.log_prob for n in whole for h in n], abs=1e-4)


def test_ensemble_of_one_model_twice_translates_as_it(checkpoint: Path, translator) -> None:  # type: ignore[no-untyped-def]
    from seq2seq import Translator

    twice = Translator.load([checkpoint, str(checkpoint)], device="cpu", threads=1)
    alone, both = translator.translate(LINES, n_best=2), twice.translate(LINES, n_best=2)
    assert [[h.tokens for h in n] for n in alone] == [[h.tokens for h in n] for n in both]
    assert [h.log_prob for n in both for h in n] == pytest.approx([h.log_prob for n in alone for h in n], abs=1e-4)
    assert twice.info["paths"] == [str(checkpoint)] * 2
    with pytest.raises(ConfigError, match="one checkpoint"):
        twice.score([("ein", "ein")])


def test_score_equals_the_score_command(checkpoint: Path, translator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pairs = [("ein Hund", "Hund ein"), ("zwei drei vier", "vier drei zwei"), ("Haus", "")]
    tsv, out = tmp_path / "pairs.tsv", tmp_path / "scored.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    assert main(["score", "--checkpoint", str(checkpoint), "--input", str(tsv), "--output", str(out)]) == 0
    scored = translator.score(pairs)
    expected = "".join(
        f"{s}\t{t}\t{p.log_prob:.6f}\t{p.log_prob / len(p.token_log_probs):.6f}\n" for (s, t), p in zip(pairs, scored)
    )
    assert out.read_text(encoding="utf-8") == expected
    for (_, t), p in zip(pairs, scored):
        assert isinstance(p, PairScore) and p.tokens == translator.tgt_vocab.pieces(translator.tgt_vocab.encode([t])[0])
        assert len(p.token_log_probs) == len(p.tokens) + 1
        assert math.fsum(p.token_log_probs) == pytest.approx(p.log_prob, abs=1e-4)


def test_greedy_token_log_probs_equal_forced_decoding(translator) -> None:  # type: ignore[no-untyped-def]
    """Scoring a greedy translation gives back its per-token log-probabilities (those the
    length limit did not force)."""
    results = [n[0] for n, line in zip(translator.translate(LINES, beam_size=1), LINES) if line]
    forced = translator.score([(line, h.text) for line, h in zip([x for x in LINES if x], results)])
    for h, f in zip(results, forced):
        if f.tokens == h.tokens:  # detokenizing then encoding again may split otherwise
            assert f.token_log_probs[:-1] == pytest.approx(h.token_log_probs[:-1], abs=1e-4)


def test_settings_are_checked_as_the_command_line_checks_them(checkpoint: Path, translator) -> None:  # type: ignore[no-untyped-def]
    from seq2seq import Translator

    missing = "/nonexistent/model.pt"  # every check below comes before any checkpoint is read
    for kwargs, needle in [
        ({"beam_size": 0}, "beam_size: 0 is outside [1, inf]"),
        ({"beam_size": 2, "n_best": 3}, "search.n_best: 3 must be in 1..search.beam_size (2)"),
        ({"workers": 0}, "workers: 0: must be 1"),
        ({"threads": -1}, "threads: -1 is outside [0, inf]"),
        ({"precision": "fp8"}, "precision: 'fp8' is not one of auto, fp32, bf16"),
        ({"beam": 3}, "unknown search setting 'beam'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            Translator.load(missing, **kwargs)
    with pytest.raises(Seq2SeqError, match=missing):
        Translator.load(missing)
    with pytest.raises(ConfigError, match=re.escape("search.n_best: 4 must be in 1..search.beam_size (3)")):
        translator.translate(LINES, n_best=4)
    with pytest.raises(ConfigError, match=re.escape("beam_size: 0 is outside")):
        translator.translate(LINES, beam_size=0)


def test_long_sources_are_cut_or_refused(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    from seq2seq import Translator

    long_line = " ".join(["Hund Katze Baum"] * 10)
    lines = ["ein Hund", long_line]
    cut = Translator.load(checkpoint, device="cpu", threads=1, max_source_length=4)
    assert cut.source_lengths(lines) == [min(4, len(ids)) for ids in cut.src_vocab.encode(lines)]
    with caplog.at_level(logging.WARNING, logger="seq2seq.translate"):
        results = cut.translate(lines)
    assert len(results[1][0].source_tokens) == 4
    assert "line 2:" in caplog.text and "search.max_source_length (4)" in caplog.text
    refuse = Translator.load(checkpoint, device="cpu", threads=1, max_source_length=4, long_source="refuse")
    with pytest.raises(DataError, match=r"line 2: \d+ source pieces, more than search.max_source_length \(4\)"):
        refuse.translate(lines)
    unlimited = Translator.load(checkpoint, device="cpu", threads=1, max_source_length=0)
    assert len(unlimited.translate(lines)[1][0].source_tokens) > 4


def test_info_is_json(translator, checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    info = json.loads(json.dumps(translator.info))
    assert info["paths"] == [str(checkpoint)] and info["decoder"] == "luong" and info["attention"] is True
    assert info["search"]["beam_size"] == 3 and info["parameters"] > 0


def test_context_decoder_returns_no_attention(corpus: Path, tmp_path: Path) -> None:
    from seq2seq import Translator

    path = write_untrained_checkpoint(tmp_path / "context.pt", corpus, decoder_type="context")
    t = Translator.load(path, device="cpu", threads=1)
    assert t.translate(["ein Hund"], return_attention=True)[0][0].attention is None
    assert t.info["attention"] is False


def guide_example() -> str:
    """The Python code block of the user guide's API section."""
    guide = (ROOT / "docs/guide.md").read_text(encoding="utf-8")
    section = guide.split("## Using it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the guide's API section has no python block"
    return str(blocks[0])


@pytest.mark.slow
def test_the_guide_example_runs_as_written(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8)
    run = tmp_path / "run"
    sets = ["--set", "training.max_steps=4", "--set", "model.decoder.type=luong"]
    assert main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *sets]) == 0
    code = guide_example()
    assert "runs/att/best.pt" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace("runs/att/best.pt", str(run / "best.pt")), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
