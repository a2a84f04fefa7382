"""Translation keeps input order, maps empty lines to empty lines and streams in chunks;
input lines end at "\\n" only, outputs are checked before decoding, long lines are limited."""

import errno
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import translate_lines, write_toy_corpus, write_untrained_checkpoint

from seq2seq.cli import main
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, SearchConfig
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.errors import ConfigError
from seq2seq.lines import split_lines
from seq2seq.models import build_model

LINES = ["ein Hund", "", "zwei kleine Kinder spielen im Wasser am Strand", "Mann", "eine Frau liest ein Buch"]


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, Vocab]:
    vocab = Vocab(train_sentencepiece([line for line in LINES if line] * 10, "unigram", 40))
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8),
    )
    return build_model(config, len(vocab), len(vocab)).eval(), vocab


@pytest.mark.parametrize("beam_size", [1, 3])
def test_order_empty_lines_and_chunking(setup: tuple[torch.nn.Module, Vocab], beam_size: int) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=beam_size, batch_size=2, max_length_a=1.0, max_length_b=3)
    cpu = torch.device("cpu")
    whole = [n[0][0] for n in translate_lines(model, LINES, search, vocab, vocab, cpu)]
    chunked = [n[0][0] for n in translate_lines(model, LINES, search, vocab, vocab, cpu, chunk_lines=2)]
    one_by_one = [next(translate_lines(model, [line], search, vocab, vocab, cpu))[0][0] for line in LINES]
    assert whole == chunked == one_by_one
    assert len(whole) == len(LINES) and whole[1] == ""


def test_bf16_decoding_runs_on_cpu(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=3, precision="bf16", max_length_b=5)
    out = list(translate_lines(model, LINES, search, vocab, vocab, torch.device("cpu")))
    assert len(out) == len(LINES) and all(len(n) == 1 for n in out)


def test_forked_workers_equal_one_process(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=3, batch_size=1, max_length_a=1.0, max_length_b=3)
    cpu = torch.device("cpu")
    one = [[(t, h.tokens, h.score) for t, h in n] for n in translate_lines(model, LINES, search, vocab, vocab, cpu)]
    two = [
        [(t, h.tokens, h.score) for t, h in n]
        for n in translate_lines(model, LINES, search, vocab, vocab, cpu, workers=2)
    ]
    assert one == two
    with pytest.raises(ConfigError, match="more on the CPU only"):
        list(translate_lines(model, LINES, search, vocab, vocab, torch.device("meta"), workers=2))


def test_shortlist_needs_a_table(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    with pytest.raises(ConfigError, match="no shortlist table"):
        list(translate_lines(model, LINES, SearchConfig(shortlist=5), vocab, vocab, torch.device("cpu")))


# --- line-exact input and writable outputs, through the command line ---------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\nb\rc\r\nd", ["a", "b\rc", "d"]),  # a lone \r is text; CRLF's \r goes
        ("a\n", ["a"]),
        ("", []),
        ("\n\n", ["", ""]),
        ("x\r\n\r\n", ["x", ""]),
        ("a\u2028b\x85c\x0cd\n", ["a\u2028b\x85c\x0cd"]),  # str.splitlines would split these
        ("tail\r", ["tail\r"]),  # no \n: not a CRLF
    ],
)
def test_split_lines_on_newline_only(text: str, lines: list[str]) -> None:
    assert list(split_lines([text])) == lines
    assert list(split_lines(text)) == lines  # any split of the text: here one character at a time
    assert list(split_lines([text[:3], text[3:]])) == lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=120, n_dev=8)


@pytest.fixture(scope="module")
def checkpoint(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", corpus)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


CARRIAGE = b"ein Hund\r\nzwei\rdrei Katze\r\n\r\nHaus\rBaum"  # 4 lines: CRLF, lone CRs, no final newline


def test_lone_carriage_returns_keep_translate_aligned(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(CARRIAGE)
    code, _, err = cli(
        ["translate", "--checkpoint", str(checkpoint), "--input", str(src), "--output", str(out)], capsys
    )
    assert code == 0, err
    from_file = out.read_text(encoding="utf-8")
    assert from_file.count("\n") == 4 and from_file.split("\n")[2] == ""
    # stdin the same: bytes through a real stdin (a TextIOWrapper, re-opened without newline translation)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CARRIAGE), encoding="utf-8"))
    code, from_stdin, err = cli(["translate", "--checkpoint", str(checkpoint)], capsys)
    assert code == 0 and from_stdin == from_file, err


def test_lone_carriage_return_keeps_score_and_evaluate_aligned(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_bytes(b"ein\rHund\tHund ein\r\nzwei\tzwei\n")
    code, out, err = cli(["score", "--checkpoint", str(checkpoint), "--input", str(pairs)], capsys)
    assert code == 0, err
    rows = out.split("\n")[:-1]
    assert len(rows) == 2 and rows[0].split("\t")[:2] == ["ein\rHund", "Hund ein"]
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_bytes(b"ein\rHund\nzwei\r\n")
    ref.write_bytes(b"Hund ein\r\nzwei\n")  # 2 lines each, however Python would split them
    hyp = tmp_path / "hyp.txt"
    code, _, err = cli(
        ["evaluate", "--checkpoint", str(checkpoint), "--src", str(src), "--ref", str(ref), "--output", str(hyp)],
        capsys,
    )
    assert code == 0, err
    assert hyp.read_text(encoding="utf-8").count("\n") == 2


MISSING = "/nonexistent/model.pt"  # never there: the output checks must come first


@pytest.mark.parametrize("kind", ["missing directory", "a directory", "parent is a file", "read-only"])
@pytest.mark.parametrize("command", ["translate", "evaluate", "score"])
def test_unwritable_output_fails_before_any_checkpoint_is_loaded(
    command: str,
    kind: str,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kind == "read-only" and os.geteuid() == 0:  # root writes anywhere: a read-only file system, then

        def read_only(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "locked").mkdir(mode=0o555)
    output = {
        "missing directory": tmp_path / "no" / "out.txt",
        "a directory": tmp_path,
        "parent is a file": tmp_path / "file" / "out.txt",
        "read-only": tmp_path / "locked" / "out.txt",
    }[kind]
    inputs = {
        "translate": ["--input", f"{corpus}/dev.src"],
        "evaluate": ["--src", f"{corpus}/dev.src", "--ref", f"{corpus}/dev.tgt"],
        "score": ["--input", f"{corpus}/dev.src"],
    }[command]
    code, _, err = cli([command, "--checkpoint", MISSING, *inputs, "--output", str(output)], capsys)
    assert code != 0 and f"--output {output}:" in err and MISSING not in err, err
    assert "Traceback" not in err and (kind != "read-only" or "read-only" in err)


def test_attention_dir_that_is_a_file(
    checkpoint: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "attn"
    a_file.write_text("x", encoding="utf-8")
    args = ["translate", "--checkpoint", MISSING, "--input", f"{corpus}/dev.src", "--attention-dir", str(a_file)]
    code, _, err = cli(args, capsys)
    assert code == 2 and str(a_file) in err and MISSING not in err, err
    fresh = tmp_path / "new" / "attn"  # made, with its parents, before decoding
    args = ["translate", "--checkpoint", str(checkpoint), "--input", f"{corpus}/dev.src", "--attention-dir", str(fresh)]
    code, _, err = cli(args, capsys)
    assert code == 0 and len(list(fresh.glob("*.json"))) == 8, err


def test_long_lines_are_cut_or_refused_by_the_checkpoints_setting(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("ein Hund\n" + "Hund Katze Baum " * 20 + "\n", encoding="utf-8")
    cut = write_untrained_checkpoint(tmp_path / "cut.pt", corpus, max_source_length=5)
    with caplog.at_level(logging.WARNING, logger="seq2seq.translate"):
        code, out, err = cli(["translate", "--checkpoint", str(cut), "--input", str(src)], capsys)
    assert code == 0 and out.count("\n") == 2, err
    assert "line 2:" in caplog.text and "search.max_source_length (5)" in caplog.text
    refuse = write_untrained_checkpoint(tmp_path / "refuse.pt", corpus, max_source_length=5, long_source="refuse")
    code, _, err = cli(["translate", "--checkpoint", str(refuse), "--input", str(src)], capsys)
    assert code == 2 and "line 2:" in err and "search.long_source: truncate" in err, err
