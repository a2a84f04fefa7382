"""Check that the Python API and `seq2seq translate` give the same bytes on a file.

    python scripts/api_parity.py runs/x/best.pt test.de --beam-size 5 [--n-best 2] [--threads 2]

Runs the `seq2seq translate` command (in a subprocess, as a user would) and
`Translator.translate` on the same lines with the same settings, writes the API's output in
the command's format (one line per input, or the Moses n-best format) and compares the two
byte for byte. Prints one JSON object (lines, identical, the first line that differs);
exits 0 when identical, 1 otherwise, 2 on an error the package reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from seq2seq import Seq2SeqError, Translator
from seq2seq.lines import read_lines


def api_output(args: argparse.Namespace) -> bytes:
    translator = Translator.load(
        args.checkpoint, device=args.device, threads=args.threads, beam_size=args.beam_size, n_best=args.n_best
    )
    results = translator.translate(read_lines(args.input))
    if translator.search.n_best == 1:
        text = "".join(nbest[0].text + "\n" for nbest in results)
    else:
        text = "".join(f"{i} ||| {h.text} ||| {h.score:.4f}\n" for i, nbest in enumerate(results) for h in nbest)
    return text.encode("utf-8")


def command_output(args: argparse.Namespace) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.txt"
        cmd = [sys.executable, "-m", "seq2seq", "translate", "--checkpoint", args.checkpoint, "--input", args.input]
        cmd += ["--output", str(out), "--device", args.device, "--threads", str(args.threads)]
        cmd += ["--beam-size", str(args.beam_size), "--n-best", str(args.n_best)]
        subprocess.run(cmd, check=True)
        return out.read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("input", help="source text, one sentence per line")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--n-best", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    try:
        api = api_output(args)
    except Seq2SeqError as e:
        print(f"api_parity.py: error: {e}", file=sys.stderr)
        return 2
    command = command_output(args)
    a, c = api.split(b"\n"), command.split(b"\n")
    first = next((i + 1 for i, (x, y) in enumerate(zip(a, c)) if x != y), None)
    if first is None and len(a) != len(c):
        first = min(len(a), len(c)) + 1
    print(json.dumps({"lines": len(read_lines(args.input)), "identical": api == command, "first_difference": first}))
    return 0 if api == command else 1


if __name__ == "__main__":
    sys.exit(main())
