"""One output line per input line, whatever the lines hold (issue 20), as properties.

Hypothesis draws files of arbitrary Unicode lines, rich in the characters that other line
splitters break on (a lone ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``,
U+2028, U+2029) and NUL, ending in ``\\n`` or ``\\r\\n``, with or without a final newline.
``translate`` (from a file and from stdin), ``evaluate --output`` and ``score`` run on them
through the command line, in process, with an untrained tiny checkpoint: what they write
has exactly one line per input line, split on ``\\n`` alone.
"""

from __future__ import annotations

import io
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_toy_corpus, write_untrained_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.cli import main

# Line breaks to str.splitlines or universal newlines, and NUL; never "\n", which ends a line.
BREAKERS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"
WORDS = ["ein", "zwei", "Hund", "Katze", " "]

# Text inside a line: the breakers, toy words and any other code point but "\n" (and surrogates,
# which UTF-8 cannot carry).
CHUNK = st.one_of(
    st.sampled_from(BREAKERS),
    st.sampled_from(WORDS),
    st.characters(exclude_categories=("Cs",), exclude_characters="\n"),
)
LINE = st.lists(CHUNK, max_size=6).map("".join)
FIELD = LINE.map(lambda line: line.replace("\t", " "))  # a score field: anything but a tab


@st.composite
def text_files(draw: st.DrawFn, line: st.SearchStrategy[str] = LINE, min_lines: int = 0) -> tuple[bytes, int]:
    """The bytes of a UTF-8 file and its number of lines."""
    lines = draw(st.lists(line, min_size=min_lines, max_size=6))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = "".join(line + ending for line in lines)
    if lines and lines[-1] and not lines[-1].endswith("\r") and draw(st.booleans()):
        text = text.removesuffix(ending)  # a last line without its newline is a line all the same
    return text.encode("utf-8"), len(lines)


def output_lines(data: bytes) -> list[bytes]:
    """The lines of an output, split on b"\\n" alone; every line must end in one."""
    assert data == b"" or data.endswith(b"\n"), data
    return data.split(b"\n")[:-1]


PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=120, n_dev=8)
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", corpus, max_length_b=2)


@pytest.fixture(scope="module", autouse=True)
def _threads_restored() -> Iterator[None]:
    """The runs use one thread (--threads 1: no oversubscribed cores); later tests get theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main([*argv, "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@PROPERTY
@given(source=text_files())
def test_translate_a_file_gives_one_line_per_line(
    source: tuple[bytes, int], checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, n = source
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        src.write_bytes(data)
        run(["translate", "--checkpoint", str(checkpoint), "--input", str(src), "--output", str(out)], capsys)
        assert len(output_lines(out.read_bytes())) == n


@PROPERTY
@given(source=text_files())
def test_translate_stdin_gives_one_line_per_line(
    source: tuple[bytes, int], checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, n = source
    # A real stdin: a TextIOWrapper over bytes, with Python's default (universal) newlines.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    out = run(["translate", "--checkpoint", str(checkpoint)], capsys)
    assert len(output_lines(out.encode("utf-8"))) == n


@PROPERTY
@given(source=text_files(min_lines=1))
def test_evaluate_output_gives_one_line_per_line(
    source: tuple[bytes, int], checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, n = source
    with tempfile.TemporaryDirectory() as tmp:
        src, hyp = Path(tmp) / "src.txt", Path(tmp) / "hyp.txt"
        src.write_bytes(data)
        argv = ["evaluate", "--checkpoint", str(checkpoint), "--src", str(src), "--ref", str(src)]
        run([*argv, "--output", str(hyp), "--json"], capsys)
        assert len(output_lines(hyp.read_bytes())) == n


@PROPERTY
@given(pairs=text_files(st.tuples(FIELD, FIELD).map("\t".join)))
def test_score_gives_one_line_per_pair(
    pairs: tuple[bytes, int], checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, n = pairs
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "pairs.tsv", Path(tmp) / "scored.tsv"
        src.write_bytes(data)
        run(["score", "--checkpoint", str(checkpoint), "--input", str(src), "--output", str(out)], capsys)
        assert len(output_lines(out.read_bytes())) == n
