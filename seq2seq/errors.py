"""The errors the package raises at its boundaries, on one base class.

Every problem a user can fix (a bad config key, an unreadable corpus or checkpoint, a device
that is not there, a run directory that cannot be used as asked) raises a subclass of
:class:`Seq2SeqError` whose message names the file, line or config key and what to do. The
command line catches the base class once and prints the message; a library user can do the
same. Anything else that escapes is a bug.
"""

from __future__ import annotations


class Seq2SeqError(Exception):
    """Base class of the errors a user can fix; the message says what to do."""


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


class MissingExtraError(Seq2SeqError, ImportError):
    """An optional dependency is not installed; the message names the package and the extra."""
