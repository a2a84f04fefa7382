"""Micro-batching: the sentences of concurrent requests decoded together.

A request's sentences wait in one queue as a :class:`Job`. One worker thread (translators
are not thread-safe, and the search runs off the event loop so that the server keeps
answering) takes jobs until the first has waited ``batch_wait_ms`` or the jobs hold
``batch_tokens`` source pieces, groups them by (model, beam size, n-best, attention), decodes
each group as one call of ``Translator.translate`` (which sorts by length and pads), and hands
each job its own slice of the results, in order. Batching shares the search's padded batches
among requests the way one file's lines share them in ``seq2seq translate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from seq2seq.outputs import Translates, Translation

log = logging.getLogger(__name__)

Result = list[list[Translation]]  # per sentence, its n-best list


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
        self._thread = threading.Thread(target=self._run, name="seq2seq-batcher", daemon=True)

    @property
    def queued(self) -> int:
        """Sentences waiting for a batch: queued, or in the batch being gathered."""
        return self._queued

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, decode those queued, then stop the worker (waits for it)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

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
        while batch := self._gather():
            try:
                self._decode(batch)
            except Exception as e:  # a bug: fail this batch's requests, keep serving
                log.exception("decoding a batch failed")
                for job in batch:
                    _deliver(job, None, e)

    def _gather(self) -> list[Job]:
        """The next batch: empty only once closed with nothing left."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return []
            deadline = self._queue[0].arrived + self.wait
        batch: list[Job] = []
        tokens = 0
        while tokens < self.batch_tokens:
            with self._cond:
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
        translator = self.translators[options.model]
        results = translator.translate(
            lines, beam_size=options.beam_size, n_best=options.n_best, return_attention=options.attention
        )
        if self.on_batch is not None:
            self.on_batch(len(lines))
        return results


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
