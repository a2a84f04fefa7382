"""Micro-batching: the sentences of concurrent requests decoded together.

A request's sentences wait in one queue as a :class:`Job`. One worker thread (translators
are not thread-safe, and the search runs off the event loop so that the server keeps
answering) gathers jobs into a batch, groups them by (model, beam size, n-best, attention),
decodes each group as one call of ``Translator.translate`` (which sorts by length and pads),
and hands each job its own slice of the results, in order. Batching shares the search's padded
batches among requests the way one file's lines share them in ``seq2seq translate``.

When a batch closes: once its jobs hold ``batch_tokens`` source pieces; else once it holds as
many jobs as the previous batch answered, since most clients send their next sentence when
they have the answer to the last one (a lone client's request then starts at once), or once
its first job has waited ``batch_wait_ms`` while not awaiting such returns, or
``RETURN_WAIT`` times that while it is. Without the returns rule, the answers of one batch
come back as requests spread over the time the server takes to reply to them all, and the
first few would form a small batch of their own while the rest wait for it
(``scripts/bench/serve_bench.py`` shows the batch sizes in ``/metrics``).

``workers`` > 1 (CPU only): that many forked processes of one thread each decode, each fed by
its own batcher thread from the one queue. One process's threads keep both cores of a small
CPU busy only inside the larger matrix products, and torch runs slower from a thread other
than the one that first used its thread pool; processes of one thread each avoid both
(``scripts/bench/serve_bench.py --serve "--workers 2"`` measures it; the processes are
:func:`seq2seq.translate.forked_pool`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.pool
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from seq2seq.outputs import Translates, Translation

log = logging.getLogger(__name__)

Result = list[list[Translation]]  # per sentence, its n-best list

# How many times ``batch_wait_ms`` a batch waits for the clients of the previous batch to
# send their next requests (see the module docstring).
RETURN_WAIT = 10


class QueueFull(Exception):
    """More sentences are waiting than the server's ``max_queued``."""


class Closed(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclass(frozen=True)
class Options:
    """What a batch must share: its sentences are decoded in one call."""

    model: str
    beam_size: int | None
    n_best: int | None
    attention: bool


@dataclass(eq=False)
class Job:
    """One request's sentences, and where their translations go."""

    options: Options
    lines: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Result]
    arrived: float = field(default_factory=time.monotonic)
    tokens: int | None = None  # source pieces, counted by the worker
    cancelled: bool = False  # the request gave up (timeout or disconnect)


class Batcher:
    """Queue and worker thread; :meth:`submit` from the event loop, :meth:`close` to drain."""

    def __init__(
        self,
        translators: Mapping[str, Translates],
        max_queued: int,
        batch_wait_ms: float,
        batch_tokens: int,
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.translators = translators
        self.max_queued = max_queued
        self.wait = batch_wait_ms / 1000
        self.batch_tokens = batch_tokens
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._queued = 0  # sentences in _queue or in the batch _gather is filling
        self._closing = False
        self._cond = threading.Condition()
        self.workers = workers
        self._pool: multiprocessing.pool.Pool | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"seq2seq-batcher-{i}", daemon=True) for i in range(workers)
        ]

    @property
    def queued(self) -> int:
        """Sentences waiting for a batch: queued, or in the batch being gathered."""
        return self._queued

    def start(self) -> None:
        if self.workers > 1:
            from seq2seq.translate import forked_pool

            global _worker_translators
            _worker_translators = self.translators  # what the forked workers inherit
            self._pool = forked_pool(self.workers, _ignore_signals)
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, decode those queued, then stop the workers (waits for them)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
        if self._pool is not None:
            self._pool.close()
            self._pool.join()

    async def submit(self, options: Options, lines: list[str]) -> Result:
        """Queue ``lines`` and wait for their n-best lists, in order. Raises :class:`QueueFull`
        or :class:`Closed` at once; if the caller is cancelled (``asyncio.wait_for``'s
        timeout), the job leaves the queue, or its results are dropped if it is decoding."""
        loop = asyncio.get_running_loop()
        job = Job(options, lines, loop, loop.create_future())
        with self._cond:
            if self._closing:
                raise Closed
            if self._queued + len(lines) > self.max_queued:
                raise QueueFull
            self._queue.append(job)
            self._queued += len(lines)
            self._cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            with self._cond:
                if job in self._queue:
                    self._queue.remove(job)
                    self._queued -= len(lines)
            raise

    def _run(self) -> None:
        answered = 0  # jobs this thread's previous batch answered: clients that may send again
        while batch := self._gather(answered):
            answered = len(batch)
            try:
                self._decode(batch)
            except Exception as e:  # a bug: fail this batch's requests, keep serving
                log.exception("decoding a batch failed")
                for job in batch:
                    _deliver(job, None, e)

    def _gather(self, answered: int) -> list[Job]:
        """The next batch: empty only once closed with nothing left."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return []
            first = self._queue[0].arrived
        batch: list[Job] = []
        tokens = 0
        while tokens < self.batch_tokens:
            with self._cond:
                if not self._queue and 0 < answered <= len(batch):
                    break  # the previous batch's clients are back
                waiting_for_returns = len(batch) < answered
                deadline = first + self.wait * (RETURN_WAIT if waiting_for_returns else 1)
                while not self._queue and not self._closing and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if not self._queue:
                    break
                job = self._queue.popleft()
                if job.cancelled:
                    self._queued -= len(job.lines)
                    continue
            if job.tokens is None:
                job.tokens = self._count_tokens(job)
            if batch and tokens + job.tokens > self.batch_tokens:  # next batch's first job
                with self._cond:
                    self._queue.appendleft(job)
                break
            batch.append(job)
            tokens += job.tokens
        with self._cond:  # the batch leaves the queue only now: its sentences waited until here
            self._queued -= sum(len(job.lines) for job in batch)
        return batch

    def _count_tokens(self, job: Job) -> int:
        try:
            return sum(self.translators[job.options.model].source_lengths(job.lines))
        except Exception:  # the decoding will report what is wrong with these lines
            return sum(len(line) for line in job.lines)

    def _decode(self, batch: list[Job]) -> None:
        groups: dict[Options, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.options, []).append(job)
        for options, jobs in groups.items():
            jobs = [job for job in jobs if not job.cancelled]
            try:
                results = self._translate(options, [line for job in jobs for line in job.lines])
            except Exception as e:
                if len(jobs) == 1:
                    _deliver(jobs[0], None, e)
                    continue
                # One request's lines may be at fault: decode each alone, so that the error
                # reaches that request only.
                for job in jobs:
                    try:
                        _deliver(job, self._translate(options, job.lines), None)
                    except Exception as e:
                        _deliver(job, None, e)
                continue
            start = 0
            for job in jobs:
                _deliver(job, results[start : start + len(job.lines)], None)
                start += len(job.lines)

    def _translate(self, options: Options, lines: list[str]) -> Result:
        if self._pool is not None:
            results = self._pool.apply(_translate, (None, options, lines))
        else:
            results = _translate(self.translators, options, lines)
        if self.on_batch is not None:
            self.on_batch(len(lines))
        return results


# The translators of a forked decoding worker: the parent's, inherited at fork.
_worker_translators: Mapping[str, Translates] = {}


def _ignore_signals() -> None:
    """In a forked decoding worker: signals are the parent's to handle, which drains the queue
    and then closes the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _translate(translators: Mapping[str, Translates] | None, options: Options, lines: list[str]) -> Result:
    """Decode one batch group; in a forked worker (``translators`` None), with the inherited ones."""
    translator = (translators if translators is not None else _worker_translators)[options.model]
    return translator.translate(
        lines, beam_size=options.beam_size, n_best=options.n_best, return_attention=options.attention
    )


def _deliver(job: Job, result: Result | None, error: BaseException | None) -> None:
    """Hand a job its result or error on its event loop (the worker thread may not touch
    the future itself)."""

    def settle() -> None:
        if job.future.done():  # cancelled meanwhile
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this job any more
        job.loop.call_soon_threadsafe(settle)
