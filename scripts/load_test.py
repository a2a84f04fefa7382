"""Load test for `seq2seq serve`: N clients, each sending single sentences one request at a
time, M requests in all; reports sentences per second and the p50/p95/p99 latency.

    python scripts/load_test.py http://127.0.0.1:8000 --clients 32 --requests 1000 \\
        --input test_2016_flickr.de --beam-size 5 [--json]

Loopback servers only (this is not a tool to load someone else's machine), and bounded: at
most 1024 clients and 1,000,000 requests, and it stops sending after --max-seconds. Standard
library only: threads and http.client."""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_CLIENTS = 1024
MAX_REQUESTS = 1_000_000
DEFAULT_SENTENCES = ["ein Hund läuft über die Wiese.", "Zwei Kinder spielen im Wasser.", "Eine Frau liest ein Buch."]


@dataclass
class Tally:
    """What the clients saw; shared by them under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    statuses: dict[str, int] = field(default_factory=dict)  # status (or error name) -> count
    next_request: int = 0

    def take(self, total: int) -> int | None:
        """The index of the next request to send, or None once ``total`` are taken."""
        with self.lock:
            if self.next_request >= total:
                return None
            self.next_request += 1
            return self.next_request - 1

    def record(self, outcome: str, seconds: float | None) -> None:
        with self.lock:
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
            if seconds is not None:
                self.latencies.append(seconds)


def loopback_only(host: str) -> None:
    """Exit unless every address ``host`` resolves to is a loopback address."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as e:
        sys.exit(f"load_test.py: cannot resolve {host}: {e}")
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if outside:
        sys.exit(f"load_test.py: {host} resolves to {', '.join(outside)}: only loopback servers may be load-tested")


def client(
    host: str,
    port: int,
    path: str,
    payloads: list[bytes],
    headers: dict[str, str],
    args: argparse.Namespace,
    tally: Tally,
    stop_at: float,
) -> None:
    """Send requests one after another on one keep-alive connection until none are left."""
    conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
    while time.monotonic() < stop_at and (i := tally.take(args.requests)) is not None:
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=payloads[i % len(payloads)], headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as e:
            tally.record(type(e).__name__, None)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            continue
        seconds = time.perf_counter() - started
        tally.record(str(response.status), seconds if response.status == 200 else None)
    conn.close()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ascending values; None for none."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8000 (loopback only)")
    p.add_argument("--clients", type=int, default=8, help=f"concurrent clients, 1 to {MAX_CLIENTS}")
    p.add_argument("--requests", type=int, default=200, help=f"requests in all, 1 to {MAX_REQUESTS}")
    p.add_argument("--input", help="sentences, one per line, sent in turn (default: three built-in ones)")
    p.add_argument("--model", help="model id (default: the server's default)")
    p.add_argument("--beam-size", type=int, help="default: the model's")
    p.add_argument("--n-best", type=int)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 1 <= args.requests <= MAX_REQUESTS:
        p.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 0 < args.max_seconds <= 86_400 or not 0 < args.timeout <= 3600:
        p.error("--max-seconds and --timeout must be positive (at most a day and an hour)")
    return args


def main() -> None:
    args = parse_args()
    url = urlsplit(args.url if "://" in args.url else f"http://{args.url}")
    if url.scheme != "http" or not url.hostname:
        sys.exit(f"load_test.py: {args.url}: give an http:// URL")
    loopback_only(url.hostname)
    if args.input:
        with open(args.input, encoding="utf-8") as f:
            sentences = [line.rstrip("\r\n") for line in f if line.strip()]
        if not sentences:
            sys.exit(f"load_test.py: {args.input}: no sentences")
    else:
        sentences = DEFAULT_SENTENCES
    given = (("model", args.model), ("beam_size", args.beam_size), ("n_best", args.n_best))
    options = {k: v for k, v in given if v is not None}
    payloads = [json.dumps({"src": [s], "return_scores": False, **options}).encode() for s in sentences]
    headers = {"Content-Type": "application/json"}
    if os.environ.get("SEQ2SEQ_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['SEQ2SEQ_API_KEY']}"
    path = url.path.rstrip("/") + "/v1/translate"

    tally = Tally()
    started = time.perf_counter()
    stop_at = time.monotonic() + args.max_seconds
    work = (url.hostname, url.port or 80, path, payloads, headers, args, tally, stop_at)
    threads = [threading.Thread(target=client, args=work, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    latencies = sorted(tally.latencies)
    report = {
        "url": args.url,
        "clients": args.clients,
        "requests": sum(tally.statuses.values()),
        "ok": len(latencies),
        "statuses": dict(sorted(tally.statuses.items())),
        "seconds": round(elapsed, 3),
        "sentences_per_second": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms": {f"p{q}": _ms(percentile(latencies, q)) for q in (50, 95, 99)},
        "stopped_early": sum(tally.statuses.values()) < args.requests,
    }
    if args.json:
        print(json.dumps(report))
        return
    ms = report["latency_ms"]
    print(f"{report['ok']}/{report['requests']} requests ok from {args.clients} clients in {report['seconds']} s")
    percentiles = ", ".join(f"{k} {v} ms" for k, v in ms.items())
    print(f"{report['sentences_per_second']} sentences/s; latency {percentiles}")
    if report["ok"] < report["requests"] or report["stopped_early"]:
        print(f"statuses: {report['statuses']}" + ("; stopped at --max-seconds" if report["stopped_early"] else ""))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 2)


if __name__ == "__main__":
    main()
