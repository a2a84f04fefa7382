"""Text files in and out of the commands, line for line.

A line ends at ``"\\n"`` and nowhere else: a ``"\\r"`` inside a line is text (the
sentence's), and only the ``"\\r"`` of a CRLF ending is removed. Python's universal newlines
would also break lines at a lone ``"\\r"`` (and at a few Unicode separators when splitting
strings), giving more output lines than input lines; so inputs are opened with
``newline=""`` (stdin re-wrapped the same way) and :func:`split_lines` joins the pieces that
such a stream yields back into lines. ``translate``, ``evaluate`` and ``score`` read files
and stdin through here alike.

Outputs are checked before any checkpoint is loaded (:func:`check_writable`), so that a
missing directory fails in a second, not after a whole decode.
"""

from __future__ import annotations

import io
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from seq2seq.errors import DataError, OutputError, output_error


def split_lines(pieces: Iterable[str]) -> Iterator[str]:
    """The lines of the text that ``pieces`` (any split of it: chunks, or the items of a
    stream opened with ``newline=""``) join to, split on ``"\\n"`` only, without their
    ending; a ``"\\r"`` before the ``"\\n"`` goes with it. Text after the last ``"\\n"`` is
    a last line; a text ending in ``"\\n"`` has no empty line after it."""
    pending: list[str] = []
    for piece in pieces:
        *complete, rest = piece.split("\n")
        if complete:
            complete[0] = "".join([*pending, complete[0]])
            pending = []
            for line in complete:
                yield line.removesuffix("\r")
        if rest:
            pending.append(rest)
    if pending:
        yield "".join(pending)


def read_lines(path: str | Path) -> list[str]:
    """Every line of a UTF-8 file (see :func:`split_lines`); :class:`DataError` naming
    ``path`` where it cannot be read or decoded."""
    with open_input(path) as f:
        return list(decoded_lines(f, str(path)))


@contextmanager
def open_input(path: str | Path | None) -> Iterator[IO[str]]:
    """A UTF-8 text stream that keeps line endings as they are (``newline=""``), for
    :func:`decoded_lines`: the file ``path``, or stdin for None. :class:`DataError` naming
    ``path`` if it cannot be opened."""
    if path is None:
        if not isinstance(sys.stdin, io.TextIOWrapper):  # replaced by another object (tests): as it is
            yield sys.stdin
            return
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
        try:
            yield stream
        finally:
            stream.detach()  # leave sys.stdin's buffer open
        return
    try:
        f = open(path, encoding="utf-8", newline="")  # noqa: SIM115 (closed below; OSError must be ours)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from e
    with f:
        yield f


def decoded_lines(stream: Iterable[str], name: str) -> Iterator[str]:
    """:func:`split_lines` over ``stream``; text that is not UTF-8 raises
    :class:`DataError` naming ``name`` and the line."""
    count = 0
    try:
        for count, line in enumerate(split_lines(stream), 1):  # noqa: B007 (count names the bad line)
            yield line
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: line {count + 1}: not valid UTF-8 ({e.reason}); convert the input, e.g. with iconv"
        ) from e


def check_writable(path: str | Path, flag: str) -> None:
    """``path`` can be written as a file (atomically: a temporary file beside it, then a
    rename), or :class:`OutputError` naming ``flag`` and ``path``: its directory is missing,
    is not a directory or does not let us create files there, or ``path`` is a directory."""
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise OutputError(f"{flag} {path}: is a directory; give a file name")
    if not parent.exists():
        raise OutputError(f"{flag} {path}: directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: {parent} is not a directory")
    _probe(parent, f"{flag} {path}")


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Make the directory ``path`` (and its parents) if needed and check that files can be
    created in it, or :class:`OutputError` naming ``flag`` and ``path``."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {path}: is a file, not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(f"{flag} {path}", e) from e
    _probe(target, f"{flag} {path}")


def _probe(directory: Path, what: str) -> None:
    """Create and remove a file in ``directory``: the one test that sees permissions, a
    read-only file system and a full disk's inodes alike (``os.access`` misses some)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".seq2seq-probe-"):
            pass
    except OSError as e:
        raise output_error(what, e) from e
