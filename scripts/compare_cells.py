#!/usr/bin/env python
"""Train the same model with each recurrent cell on the same data and wall-time budget,
then tabulate and plot the runs, in the manner of Chung et al. (2014) and Jozefowicz et
al. (2015).

    python scripts/compare_cells.py CONFIG --out-dir DIR [--cells gru,lstm,...]
                                   [--minutes M] [--set KEY=VALUE ...] [--report-only]

Each cell runs ``seq2seq train CONFIG`` in DIR/CELL with the cell in the encoder and the
decoder (``lstmp`` projects to half the hidden size) and ``training.max_minutes: M``, then
``seq2seq evaluate --split test`` on its best.pt. Written to DIR:

- ``cells.md``: parameters, training tokens/s (median of the logged windows; real source
  and target pieces), seconds per epoch at that speed (the training set's pieces / tokens/s,
  validations excluded), updates, best dev BLEU (greedy) with that checkpoint's dev
  perplexity, and test BLEU (the config's search);
- ``cells.png``: dev BLEU against training wall-clock minutes, one line per cell
  (needs matplotlib: ``pip install -e '.[plot]'``).

``--report-only`` rebuilds both from the runs already in DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import read_checkpoint
from seq2seq.config import CELLS, cell_overrides, load_config
from seq2seq.errors import Seq2SeqError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated (default: every cell)")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per cell")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--report-only", action="store_true", help="tabulate and plot existing runs")
    args = parser.parse_args(argv)
    try:
        return _compare(args)
    except (Seq2SeqError, OSError) as e:  # a config, run directory or checkpoint that cannot be used
        print(f"compare_cells.py: error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:  # the command printed its own error
        print(f"compare_cells.py: error: {' '.join(map(str, e.cmd[:4]))} ... exited {e.returncode}", file=sys.stderr)
        return e.returncode


def _compare(args: argparse.Namespace) -> int:
    out, cells = Path(args.out_dir), args.cells.split(",")
    base = load_config(args.config, args.set)
    if not args.report_only:
        for cell in cells:
            run(args, cell, cell_overrides(cell, base), out / cell)
    tokens = epoch_tokens(args.config, [*args.set, *cell_overrides(cells[0], base)], out / cells[0])
    summaries = [summarize(cell, out / cell, tokens) for cell in cells]
    table = markdown(summaries)
    (out / "cells.md").write_text(table, encoding="utf-8")
    print(table, end="")
    plot(summaries, out / "cells.png")
    return 0


def run(args: argparse.Namespace, cell: str, overrides: list[str], run_dir: Path) -> None:
    sets = [*args.set, *overrides, f"training.max_minutes={args.minutes}"]
    seq2seq = [sys.executable, "-m", "seq2seq"]
    train = [*seq2seq, "train", args.config, "--run-dir", str(run_dir), "--overwrite"]
    subprocess.run([*train, *(x for s in sets for x in ("--set", s))], check=True)
    evaluate = [*seq2seq, "evaluate", "--checkpoint", str(run_dir / "best.pt"), "--split", "test", "--json"]
    result = subprocess.run(evaluate, check=True, capture_output=True, text=True, env=dict(os.environ))
    (run_dir / "test.json").write_text(result.stdout, encoding="utf-8")


def epoch_tokens(config_path: str, overrides: list[str], run_dir: Path) -> int:
    """Real source + target pieces in one epoch of the training set, as a run sees it
    (its SentencePiece model, its length filter)."""
    from seq2seq.data.prepare import prepare_data

    config = load_config(config_path, overrides)
    data = prepare_data(config.data, run_dir, seed=config.training.seed)  # reloads run_dir/spm.model
    return int(data.train.src_lengths.sum() + data.train.tgt_lengths.sum())


def summarize(cell: str, run_dir: Path, epoch_tokens: int) -> dict[str, Any]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    dev = [r for r in records if "dev_bleu" in r]
    best = max(dev, key=lambda r: r["dev_bleu"])
    weights = read_checkpoint(run_dir / "best.pt").weights
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in train)
    return {
        "cell": cell,
        "parameters": sum(v.numel() for v in weights.values()),
        "epoch_seconds": epoch_tokens / tokens_per_s,
        "tokens_per_s": tokens_per_s,
        "steps": records[-1]["step"],
        "dev_bleu": best["dev_bleu"],
        "dev_ppl": best["dev_ppl"],
        "test_bleu": json.loads((run_dir / "test.json").read_text())["bleu"],
        "curve": [(r["elapsed"] / 60, r["dev_bleu"]) for r in dev],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| cell | parameters | training tokens/s | s/epoch | updates | dev BLEU | dev ppl | test BLEU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['parameters']:,} | {r['tokens_per_s']:,.0f} | {r['epoch_seconds']:.0f} | {r['steps']} "
            f"| {r['dev_bleu']:.2f} | {r['dev_ppl']:.2f} | {r['test_bleu']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no {path}", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        minutes, bleu = zip(*r["curve"])
        ax.plot(minutes, bleu, marker="o", markersize=3, label=r["cell"])
    ax.set_xlabel("training wall-clock (minutes, validations included)")
    ax.set_ylabel("dev BLEU (greedy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
