#!/usr/bin/env python
"""`seq2seq serve` under load against `seq2seq translate` on the same sentences.

    python scripts/bench/serve_bench.py CKPT SRC [--beam-size 5] [--clients 1 8 32] [--rounds 2]
        [--requests 1000] [--port 8765] [--flags "--precision bf16 --shortlist 10"]
        [--translate "" "--workers 2"] [--serve "--workers 2"] [--json]

Per round, interleaved: (1) for each ``--translate`` variant (flags of translate alone),
`seq2seq translate --checkpoint CKPT --input SRC` in a fresh process, timed by the wall clock
(model loading included) and by the decoding alone (the process's wall time minus the same
command on an empty input); (2) for each ``--serve`` variant (flags of serve alone) and each
client count, a fresh `seq2seq serve` on a loopback port and `scripts/load_test.py` sending the
first ``--requests`` lines of SRC one sentence per request. Prints the median of the rounds and
each run: sentences/s, and for the server p50/p95/p99 latency, sentences per batch (from
``/metrics``) and the ratio to each translate variant's decoding rate. ``--flags``: search
flags given to both commands alike. Every command it runs is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str]) -> float:
    """Wall seconds of ``cmd``; exits with its stderr if it fails."""
    print("$", " ".join(cmd), file=sys.stderr)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"serve_bench.py: failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return seconds


def translate_rate(args: argparse.Namespace, variant: str, src: Path, empty: Path, out: Path) -> dict[str, float]:
    base = [sys.executable, "-m", "seq2seq", "translate", "--checkpoint", args.checkpoint]
    base += ["--beam-size", str(args.beam_size), *shlex.split(args.flags), *shlex.split(variant)]
    base += ["--output", str(out)]
    full = run([*base, "--input", str(src)])
    load = run([*base, "--input", str(empty)])
    lines = args.requests
    return {"wall_s": full, "load_s": load, "wall_sent_s": lines / full, "decode_sent_s": lines / (full - load)}


def wait_healthy(url: str, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if server.poll() is not None:
            sys.exit(f"serve_bench.py: the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit("serve_bench.py: the server did not answer /health")


def serve_rate(args: argparse.Namespace, variant: str, src: Path, clients: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "seq2seq", "serve", "--checkpoint", args.checkpoint, "--port", str(args.port)]
    cmd += [*shlex.split(args.flags), *shlex.split(variant)]
    print("$", " ".join(cmd), "&", file=sys.stderr)
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        load = [sys.executable, str(ROOT / "scripts" / "load_test.py"), url, "--clients", str(clients)]
        load += ["--requests", str(args.requests), "--input", str(src), "--beam-size", str(args.beam_size), "--json"]
        print("$", " ".join(load), file=sys.stderr)
        done = subprocess.run(load, capture_output=True, text=True, check=True)
        report = json.loads(done.stdout)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    flat = {"sentences_per_second": float(report["sentences_per_second"]), "ok": float(report["ok"])}
    flat["sentences_per_batch"] = _metric(metrics, "seq2seq_batch_sentences_sum") / max(
        _metric(metrics, "seq2seq_batch_sentences_count"), 1.0
    )
    return flat | {f"{q}_ms": float(v) for q, v in report["latency_ms"].items()}


def _name(command: str, variant: str) -> str:
    return f"{command} {variant}".strip()


def _metric(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in Prometheus text."""
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("src", help="source sentences, one per line")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000, help="sentences: the first N lines of SRC")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--flags", default="", help="search flags for both commands, e.g. '--precision bf16'")
    parser.add_argument("--translate", nargs="+", default=[""], help="translate's own flags, one string per variant")
    parser.add_argument("--serve", nargs="+", default=[""], help="serve's own flags, one string per variant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(args.src).read_bytes().split(b"\n")[: args.requests]
        src, empty, out = Path(tmp) / "src.txt", Path(tmp) / "empty.txt", Path(tmp) / "out.txt"
        src.write_bytes(b"\n".join(lines) + b"\n")
        args.requests = len(lines)
        empty.write_bytes(b"")
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for variant in args.translate:
                runs.setdefault(_name("translate", variant), []).append(translate_rate(args, variant, src, empty, out))
            for variant in args.serve:
                for clients in args.clients:
                    name = f"{_name('serve', variant)}, {clients} clients"
                    runs.setdefault(name, []).append(serve_rate(args, variant, src, clients))
    baselines = {
        _name("translate", v): statistics.median(r["decode_sent_s"] for r in runs[_name("translate", v)])
        for v in args.translate
    }
    table = {}
    for name, reports in runs.items():
        keys = [k for k, v in reports[0].items() if isinstance(v, (int, float))]
        table[name] = {k: statistics.median(float(r[k]) for r in reports) for k in keys}
        rate = table[name].get("sentences_per_second") or table[name]["decode_sent_s"]
        for baseline, base_rate in baselines.items():
            table[name][f"ratio_to_{baseline.replace(' ', '_')}_decoding"] = rate / base_rate
    print(json.dumps({"median": table, "runs": runs}, indent=1) if args.json else json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
