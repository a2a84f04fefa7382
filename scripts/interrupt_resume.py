#!/usr/bin/env python
"""Interrupt a training run again and again, resume it each time, and check that it ends with
the weights of a run that was never interrupted, bit for bit (on the CPU).

    python scripts/interrupt_resume.py CONFIG --out-dir DIR [--interruptions 10] [--seed S]
                                       [--signals SIGINT,SIGTERM] [--toy-corpus] [--set KEY=VALUE ...]

1. ``seq2seq train CONFIG`` in DIR/straight, to its end.
2. The same in DIR/interrupted, sent a signal (drawn from ``--signals``) at ``--interruptions``
   random moments: a step drawn at random (seeded, logged), then a random delay of up to
   ``--max-delay`` seconds after that step's record appears in metrics.jsonl, so that the signal
   lands anywhere in an update, a validation or a save. After each, the run must exit with
   128 + the signal's number (130, 143) and a message that says how to resume; it is then
   resumed with ``--resume``, and once more at the end to finish. ("in validation": the signal
   cut a validation short, which the resumed run does again first.)
3. The weights of last.pt and best.pt of both runs are compared tensor by tensor, and every
   line of both metrics.jsonl files must be strict JSON.

Prints one row per interruption and exits 1 on any difference. ``--toy-corpus`` writes a small
copy-and-reverse corpus into DIR/corpus and points the config's train and dev sets at it (for
configs/tiny.yaml, whose data/tiny does not ship). ``training.log_every`` is set to 1 in both
runs: a record per step (logging changes nothing that is trained).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import read_checkpoint
from seq2seq.errors import Seq2SeqError

TOY_WORDS = ["ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "Haus", "Hund", "Baum"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out-dir", type=Path, required=True, help="for the two run directories (emptied first)")
    parser.add_argument("--interruptions", type=int, default=10)
    parser.add_argument("--seed", type=int, help="of the random moments (default: drawn and printed)")
    parser.add_argument("--signals", default="SIGINT,SIGTERM", help="comma-separated; one drawn per interruption")
    parser.add_argument("--max-delay", type=float, default=0.05, help="seconds after the step's record, at most")
    parser.add_argument("--toy-corpus", action="store_true", help="train on a generated copy-and-reverse corpus")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to seq2seq train")
    args = parser.parse_args()
    try:
        return interrupt_and_resume(args)
    except (Seq2SeqError, OSError) as e:  # a checkpoint or run directory that cannot be read
        print(f"interrupt_resume.py: error: {e}", file=sys.stderr)
        return 2


def interrupt_and_resume(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    signals = [signal.Signals[name.strip()] for name in args.signals.split(",")]
    out = args.out_dir
    sets = [*args.set, "training.log_every=1", "training.device=cpu"]
    if args.toy_corpus:
        corpus = write_toy_corpus(out / "corpus")
        sets += [f"data.train.path={corpus}/train", f"data.dev.path={corpus}/dev"]
    flags = [x for s in sets for x in ("--set", s)]
    straight, run = out / "straight", out / "interrupted"

    if train(args.config, straight, flags, overwrite=True).returncode != 0:
        print("the uninterrupted run failed", file=sys.stderr)
        return 1
    total = progress(straight)["step"]
    # A few steps of margin at the end, so that the run is still training when the signal comes.
    targets = sorted(rng.sample(range(1, total - 3), min(args.interruptions, total - 4)))
    print(f"uninterrupted run: {total} steps; interrupting after steps {targets}\n", flush=True)

    rows, failed, saved = [], False, 0
    for i, target in enumerate(targets):
        target = max(target, saved + 1)  # a step this segment will train
        sig, delay = rng.choice(signals), rng.uniform(0.0, args.max_delay)
        row = interrupt(args.config, run, flags, resume=i > 0 or saved > 0, target=target, sig=sig, delay=delay)
        saved = row["saved step"] if isinstance(row["saved step"], int) else saved
        failed |= not row["ok"]
        rows.append({"#": i + 1, **row})
        print(table_row(rows[-1]), flush=True)
    final = train(args.config, run, [*flags, "--resume"])
    if final.returncode != 0:
        print(f"the final resume failed ({final.returncode}): {final.stderr[-2000:]}", file=sys.stderr)
        return 1

    print()
    for name in ("last.pt", "best.pt"):
        same, detail = same_weights(straight / name, run / name)
        failed |= not same
        print(f"{name}: {'bit-identical' if same else 'DIFFERENT'} ({detail})")
    for run_dir in (straight, run):
        bad = strict_json_errors(run_dir / "metrics.jsonl")
        failed |= bool(bad)
        print(f"{run_dir / 'metrics.jsonl'}: {bad or 'strict JSON on every line'}")
    print("FAILED" if failed else "OK: every interruption resumed to the uninterrupted run's weights")
    return 1 if failed else 0


def train(config: str, run_dir: Path, flags: list[str], overwrite: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "seq2seq", "train", config, "--run-dir", str(run_dir), *flags]
    return subprocess.run([*cmd, "--overwrite"] if overwrite else cmd, capture_output=True, text=True, check=False)


def interrupt(
    config: str, run_dir: Path, flags: list[str], resume: bool, target: int, sig: signal.Signals, delay: float
) -> dict[str, Any]:
    """Start (or resume) the run, send ``sig`` ``delay`` seconds after the record of step ``target``
    appears, wait for it to exit; what happened."""
    metrics = run_dir / "metrics.jsonl"
    seen = len(metrics.read_text(encoding="utf-8").splitlines()) if resume and metrics.exists() else 0
    cmd = [sys.executable, "-m", "seq2seq", "train", config, "--run-dir", str(run_dir), *flags]
    cmd.append("--resume" if resume else "--overwrite")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        lines = metrics.read_text(encoding="utf-8").splitlines()[seen:] if metrics.exists() else []
        if any(json.loads(line)["step"] >= target for line in lines if line.endswith("}")):
            time.sleep(delay)
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=600)
    expected = 128 + int(sig)
    message = err.strip().splitlines()[-1] if err.strip() else ""
    said = "resume with: seq2seq train" in message and "--resume" in message
    state = progress(run_dir) if (run_dir / "last.pt").exists() else {"step": "-", "validation_due": False}
    return {
        "signal": sig.name,
        "after step": target,
        "delay s": f"{delay:.3f}",
        "exit": proc.returncode,
        "saved step": state["step"],
        "in validation": "yes" if state.get("validation_due") else "",
        "message": "resume command" if said else repr(message[-80:]),
        "ok": proc.returncode == expected and said,
    }


def table_row(row: dict[str, Any]) -> str:
    keys = ["#", "signal", "after step", "delay s", "exit", "saved step", "in validation", "message", "ok"]
    header = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n" if row["#"] == 1 else ""
    return header + "| " + " | ".join(str(row[k]) for k in keys) + " |"


def progress(run_dir: Path) -> dict[str, Any]:
    state = read_checkpoint(run_dir / "last.pt").train_state
    assert state is not None
    result: dict[str, Any] = state["progress"]
    return result


def same_weights(a: Path, b: Path) -> tuple[bool, str]:
    wa, wb = read_checkpoint(a).weights, read_checkpoint(b).weights
    if wa.keys() != wb.keys():
        return False, "different tensor names"
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    return not differ, f"{len(wa) - len(differ)} of {len(wa)} tensors equal"


def strict_json_errors(path: Path) -> list[str]:
    def refuse(constant: str) -> Any:
        raise ValueError(f"bare {constant}")

    errors = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            json.loads(line, parse_constant=refuse)
        except ValueError as e:
            errors.append(f"line {n}: {e}")
    return errors


def write_toy_corpus(directory: Path, n_train: int = 300, n_dev: int = 20) -> Path:
    """A copy-and-reverse task: each target is its source's words in reverse order."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        src = [" ".join(rng.choices(TOY_WORDS, k=rng.randint(2, 7))) for _ in range(n)]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        tgt = [" ".join(reversed(s.split())) for s in src]
        (directory / f"{split}.tgt").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    return directory


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
