"""The errors the package raises at its boundaries, on one base class.

Every problem a user can fix (a bad config key, an unreadable corpus or checkpoint, a device
that is not there, a run directory that cannot be used as asked) raises a subclass of
:class:`Seq2SeqError` whose message names the file, line or config key and what to do. The
command line catches the base class once and prints the message; a library user can do the
same. Anything else that escapes is a bug: the command line prints it on one line too (exit
code 1) and shows its traceback only with ``--debug`` or ``SEQ2SEQ_DEBUG=1``.
"""

from __future__ import annotations

import errno
from pathlib import Path


class Seq2SeqError(Exception):
    """Base class of the errors a user can fix; the message says what to do."""

    exit_code: int = 2  # what the command line exits with (a subclass may choose another)


class ConfigError(Seq2SeqError, ValueError):
    """A config key or command-line flag is unknown, missing, of the wrong type or out of range."""


class DataError(Seq2SeqError, ValueError):
    """A corpus or input file is missing, unreadable or malformed."""


class CheckpointError(Seq2SeqError, ValueError):
    """A checkpoint file is missing, unreadable, of another format or incompatible with another."""


class DeviceError(Seq2SeqError, RuntimeError):
    """The requested device or precision is not available here."""


class RunDirError(Seq2SeqError, RuntimeError):
    """The run directory cannot be used as asked (exists, or has nothing to resume)."""


class OutputError(Seq2SeqError, OSError):
    """An output file cannot be written (disk full, read-only, a directory that is missing or
    is a file); the message names the path. Atomic writes leave no half-written file behind."""

    def __str__(self) -> str:  # the message alone, though errno and filename are set
        return str(self.args[0]) if self.args else ""


class MissingExtraError(Seq2SeqError, ImportError):
    """An optional dependency is not installed; the message names the package and the extra."""


class TrainingError(Seq2SeqError, RuntimeError):
    """Training cannot go on as configured (e.g. it diverged); the message names the keys to change."""


# What to do about the usual reasons a file cannot be written, by errno.
_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: write elsewhere or change the permissions",
    errno.EPERM: "permission denied: write elsewhere or change the permissions",
    errno.ENOENT: "its directory does not exist: create it first",
    errno.ENOTDIR: "a part of its directory is a file, not a directory",
    errno.EEXIST: "a part of its directory is a file, not a directory",  # from mkdir(exist_ok=True)
    errno.EISDIR: "it is a directory: give a file name",
}


def output_error(path: str | Path, error: OSError) -> OutputError:
    """An :class:`OutputError` for ``error`` raised while writing ``path``: one line naming
    the path (not a temporary file beside it), the reason and what to do."""
    hint = _WRITE_HINTS.get(error.errno or 0) or error.strerror or str(error)
    wrapped = OutputError(f"{path}: cannot write: {hint}")
    wrapped.errno, wrapped.filename = error.errno, str(path)  # str() stays the one line above
    return wrapped
