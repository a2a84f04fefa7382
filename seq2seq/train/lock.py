"""One training per run directory: an advisory lock on ``RUN_DIR/.lock``.

``fcntl.flock`` belongs to the open file, so the kernel releases it when the process ends,
however it ends (SIGKILL included): a stale lock never blocks a restart, and the file itself may
stay. The holder writes its process id and host name into the file, for the message a second
process gets. (flock is advisory, local to one machine, and on some network file systems not
shared between machines: it stops a second ``seq2seq train``, not every writer.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path

from seq2seq.errors import RunDirError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLock:
    """Hold the lock of ``run_dir`` (which must exist) from :meth:`acquire` to :meth:`release`
    or the end of the process."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once, or raise :class:`RunDirError` naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"{self.path}: cannot create the run directory's lock file: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise RunDirError(
                f"{self.path.parent}: another training ({who}) is using this run directory; "
                "wait for it to end or stop it, or choose another --run-dir"
            ) from None
        except OSError as e:  # a file system without locks (some network ones): go on unguarded
            log.warning("%s: cannot lock (%s); nothing stops a second training in this directory", self.path, e)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (closing the file releases it); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
