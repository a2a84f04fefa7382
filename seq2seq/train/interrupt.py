"""Stopping a training run cleanly on SIGINT (Ctrl-C) and SIGTERM (what schedulers and clusters
send before they kill or preempt a job).

While an update or the bookkeeping after it runs (the *deferred* phase), the first signal is only
noted: the loop finishes that update, saves ``last.pt`` and raises :class:`Interrupted`, so the
weights, optimizer and data position on disk are those after a whole update, never half of one.
Elsewhere (setting up, or the dev-set decoding of a validation, which changes nothing that is
saved) the signal raises at once. A second signal always raises at once, without saving: every
write is atomic (:mod:`seq2seq.atomic`), so this only loses the work since the last save.

The command line turns :class:`Interrupted` into the shell's status for the signal, 128 + its
number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal. ``saved_step``: the step of the ``last.pt`` written on the
    way out, or None where nothing was saved (a second signal, or no model yet)."""

    def __init__(self, signum: int, again: bool = False) -> None:
        self.signum, self.again = signum, again
        self.saved_step: int | None = None
        super().__init__(f"interrupted by {self.name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The status a shell gives a process killed by this signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum


class Interrupts:
    """A context manager that handles SIGINT and SIGTERM while training runs, and gives the
    previous handlers back when it ends. Off the main thread (where Python cannot install signal
    handlers) it does nothing and the signals act as they would without it."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received, if any
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """A signal arrived during a deferred phase: stop at the next consistent point."""
        return self.signum is not None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block the first signal is only noted (see :attr:`requested`)."""
        before, self._deferring = self._deferring, True
        try:
            yield
        finally:
            self._deferring = before

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Within this block (inside a deferred one) a signal raises at once."""
        before, self._deferring = self._deferring, False
        try:
            if self.signum is not None:  # noted just before the block began
                raise Interrupted(self.signum)
            yield
        finally:
            self._deferring = before

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None and self._deferring:
            self.signum = signum
            log.warning(
                "%s: stopping after this update, once last.pt is saved (send it again to stop at once, unsaved)",
                signal.Signals(signum).name,
            )
            return
        again = self.signum is not None
        self.signum = self.signum or signum
        raise Interrupted(signum, again=again)
