"""Counters for ``GET /metrics``, written in the Prometheus text exposition format (version
0.0.4) by hand, so that serving needs no client library. Thread-safe: the event loop counts
requests, the batcher's worker thread counts batches."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a request's arrival to its answer; sentences per decoded batch.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are exposed."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip([*map(_number, self.bounds), "+Inf"], self.counts):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {_number(self.sum)}", f"{name}_count{braces} {self.count}"]
        return out


class Metrics:
    """What the server counts; :meth:`render` writes it out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, path, status)
        self.sentences: Counter[str] = Counter()  # by model id
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batches = Histogram(BATCH_BUCKETS)

    def count_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests[method, path, status] += 1

    def count_translation(self, model: str, sentences: int, seconds: float) -> None:
        with self._lock:
            self.sentences[model] += sentences
            self.latency.observe(seconds)

    def count_batch(self, sentences: int) -> None:
        with self._lock:
            self.batches.observe(sentences)

    def render(self, queued: int) -> str:
        """The exposition text; ``queued``: sentences waiting for a batch now."""
        with self._lock:
            lines = _family("seq2seq_requests_total", "counter", "HTTP requests answered, by method, path and status.")
            lines += [
                f"seq2seq_requests_total{{{_labels(method=m, path=p, status=str(s))}}} {n}"
                for (m, p, s), n in sorted(self.requests.items())
            ]
            lines += _family("seq2seq_sentences_total", "counter", "Sentences translated, by model.")
            lines += [f"seq2seq_sentences_total{{{_labels(model=m)}}} {n}" for m, n in sorted(self.sentences.items())]
            lines += _family("seq2seq_queue_sentences", "gauge", "Sentences waiting for a batch.")
            lines.append(f"seq2seq_queue_sentences {queued}")
            lines += _family("seq2seq_batch_sentences", "histogram", "Sentences per decoded batch.")
            lines += self.batches.lines("seq2seq_batch_sentences")
            lines += _family(
                "seq2seq_request_seconds", "histogram", "Seconds from a translate request's arrival to its answer."
            )
            lines += self.latency.lines("seq2seq_request_seconds")
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _labels(**labels: str) -> str:
    # The format's escapes in label values: backslash, double quote, line feed.
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())


def _number(x: float) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)
