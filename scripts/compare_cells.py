#!/usr/bin/env python
"""Every recurrent cell in the same attention model and recipe, for the same number of
updates, with several seeds; then the cells' training and decoding speed, measured apart
and interleaved. In the manner of Chung et al. (2014) and Jozefowicz et al. (2015).

    python scripts/compare_cells.py CONFIG --out-dir DIR [--cells rnn,gru,...] [--seeds 1,2]
        [--steps N] [--validate-every K] [--jobs J] [--speed-rounds R] [--speed-steps N]
        [--set KEY=VALUE ...]
    python scripts/compare_cells.py --out-dir DIR --report-only [--cells ...]

Training: each cell and seed runs ``seq2seq train CONFIG`` in DIR/runs/CELL-sSEED with the cell
in the encoder and the decoder (``lstmp`` projects to half the hidden size), training.seed
SEED, max_steps N (no epoch or time limit, no early stop), validate_every K and threads 1,
J runs at a time (J at most the cores: each run has one to itself), then ``seq2seq evaluate
--split test --beam-size 5`` on its best.pt. DIR/runs/CELL-sSEED.json is written as each run
ends (its log: DIR/runs/CELL-sSEED.log); a run that finished with the same settings is not run
again (a failed one is), so the same command continues a stopped experiment, and run again
after training it repeats the speed phase alone.

Speed (alone, one thread): for R rounds, each cell in turn trains N updates of a fresh model on
the same batches (after 5 updates of warm-up) and decodes the test set with beam 5 using its
first seed's best.pt; the median per cell goes to DIR/speed.json. ``--speed-rounds 0`` skips it.

Report, rebuilt from DIR alone by ``--report-only``:

- ``cells.md``: per cell, parameters, test BLEU (beam 5; mean and each seed), best dev BLEU
  (greedy validation, mean) and how much the seeds' mean curve rose in the last third of the
  updates (near 0 once it has flattened), training tokens/s (real source and target pieces),
  seconds per update and per epoch (the training set's pieces at that rate), decoding
  sentences/s;
- ``cells.png``: dev BLEU against updates and against training wall-clock (validations
  included; J runs shared the machine), the mean of the seeds, one line per cell (needs
  matplotlib: ``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from seq2seq.config import CELLS, RunConfig, cell_overrides, load_config, parse_cells
from seq2seq.errors import ConfigError
from seq2seq.train import experiment

WARMUP_UPDATES = 5  # before the timed updates of the speed phase
TEST_BEAM = 5


def main(argv: list[str] | None = None) -> int:
    parser = experiment.parser(__doc__, steps=3000)
    parser.add_argument("--cells", help="comma-separated (default: every cell; with --report-only: those in DIR)")
    parser.add_argument("--speed-rounds", type=int, default=3, help="interleaved speed rounds; 0: none")
    parser.add_argument("--speed-steps", type=int, default=30, help="timed updates per cell and round")
    args = parser.parse_args(argv)
    status, table, errors = experiment.outcome("compare_cells.py", compare, args)
    print(table, end="")
    for line in errors:
        print(line, file=sys.stderr)
    return status


def compare(args: argparse.Namespace) -> tuple[str, list[str]]:
    out = Path(args.out_dir)
    cells = parse_cells(args.cells) if args.cells else None
    failed: list[str] = []
    if not args.report_only:
        seeds = experiment.check_flags(args)
        base = load_config(args.config, args.set)
        cells = cells or list(CELLS)
        configs = {cell: [*args.set, *cell_overrides(cell, base)] for cell in cells}
        for sets in configs.values():  # every cell's config checked before anything runs
            load_config(args.config, sets)
        runs = [
            experiment.TrainingRun(
                f"{cell}-s{seed}",
                args.config,
                (*configs[cell], *experiment.budget(seed, args.steps, args.validate_every)),
                {"cell": cell, "seed": seed},
                evaluate=("--split", "test", "--beam-size", str(TEST_BEAM)),
            )
            for cell in cells
            for seed in seeds
        ]
        failed = experiment.run_trainings(runs, out / "runs", args.jobs, on_done=_print_run)
        if args.speed_rounds > 0:
            measure_speed(args, {cell: load_config(args.config, sets) for cell, sets in configs.items()}, seeds[0])
    return report(out, cells), failed


def _print_run(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: " + result.get("error", f"test BLEU {result['evaluation']['bleu']:.2f}"), flush=True)


def measure_speed(args: argparse.Namespace, configs: dict[str, RunConfig], seed: int) -> None:
    """The interleaved speed phase (see the module docstring); writes DIR/speed.json."""
    from seq2seq.api import Translator
    from seq2seq.data.batching import plan_batches
    from seq2seq.data.prepare import prepare_data
    from seq2seq.data.sources import load_corpus
    from seq2seq.runtime import pick_device, set_threads

    out = Path(args.out_dir)
    first = next(iter(configs.values()))
    set_threads(1)
    device = pick_device(first.training.device)
    data = prepare_data(first.data, out / "speed", seed=first.training.seed)  # the same batches for every cell
    dc = first.data
    plan = plan_batches(data.train.src_lengths, data.train.tgt_lengths, dc.batch_tokens, dc.batch_sentences, seed=0)
    timed = (plan * (1 + (WARMUP_UPDATES + args.speed_steps) // len(plan)))[: WARMUP_UPDATES + args.speed_steps]
    test = load_corpus(dc.test or dc.dev, dc.src_lang, dc.tgt_lang)["src"]
    raw: dict[str, dict[str, list[float]]] = {cell: {"seconds_per_update": [], "tokens_per_s": []} for cell in configs}
    for _ in range(args.speed_rounds):
        for cell, config in configs.items():
            seconds, tokens = time_updates(config, data, timed, device)
            raw[cell]["seconds_per_update"].append(seconds / args.speed_steps)
            raw[cell]["tokens_per_s"].append(tokens / seconds)
            best = out / "runs" / f"{cell}-s{seed}" / "best.pt"
            if best.exists():
                translator = Translator.load(best, device=str(device), threads=1, beam_size=TEST_BEAM)
                translator.translate(test[:8])  # warm-up
                start = time.perf_counter()
                translator.translate(test)
                raw[cell].setdefault("decode_sentences_per_s", []).append(len(test) / (time.perf_counter() - start))
    epoch_tokens = int(data.train.src_lengths.sum() + data.train.tgt_lengths.sum())
    speed = {cell: {k: statistics.median(v) for k, v in r.items()} for cell, r in raw.items()}
    for figures in speed.values():
        figures["epoch_seconds"] = epoch_tokens / figures["tokens_per_s"]
    summary = {"rounds": args.speed_rounds, "updates": args.speed_steps, "cells": speed, "raw": raw}
    experiment.write_json(out / "speed.json", summary)


def time_updates(config: RunConfig, data: Any, plan: list[Any], device: Any) -> tuple[float, int]:
    """Seconds of the updates of ``plan`` after the warm-up, on a fresh model, and their real tokens."""
    import torch

    from seq2seq.train.loop import Trainer

    torch.manual_seed(config.training.seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), data, device)
        tokens, start = 0, 0.0
        for i, indices in enumerate(plan):
            if i == WARMUP_UPDATES:
                start = time.perf_counter()
            batch = trainer.make(data.train, indices)
            trainer.update([batch])
            tokens += batch.num_tokens if i >= WARMUP_UPDATES else 0
        seconds = time.perf_counter() - start
        trainer.close()
    return seconds, tokens


def report(out: Path, cells: list[str] | None) -> str:
    """Write DIR/cells.md and DIR/cells.png from DIR/runs/*.json and DIR/speed.json; the table."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "runs").glob("*.json"))]
    if not runs:
        raise ConfigError(f"{out / 'runs'}: no run results (*.json) to report; run without --report-only first")
    speed_path = out / "speed.json"
    speed = json.loads(speed_path.read_text(encoding="utf-8"))["cells"] if speed_path.exists() else {}
    found = {r["cell"] for r in runs}
    order = cells or [c for c in CELLS if c in found] + sorted(found - set(CELLS))
    rows = [summarize_cell(cell, [r for r in runs if r["cell"] == cell], speed.get(cell, {})) for cell in order]
    table = markdown(rows)
    (out / "cells.md").write_text(table, encoding="utf-8")
    plot(rows, out / "cells.png")
    return table


def summarize_cell(cell: str, runs: list[dict[str, Any]], speed: dict[str, float]) -> dict[str, Any]:
    """One row: the cell's runs (each seed's JSON) and its speed figures."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["seed"])
    return {
        "cell": cell,
        "parameters": ok[0]["parameters"] if ok else None,
        "test_bleu": [(r["seed"], r["evaluation"]["bleu"]) for r in ok],
        "dev_bleu": statistics.mean(r["best_dev_bleu"] for r in ok) if ok else None,
        "steps": max((r["steps"] for r in ok), default=None),
        "failed": sorted(r["seed"] for r in runs if "error" in r),
        "speed": speed,
        "curve": mean_curve([r["dev"] for r in ok]),
    }


def late_gain(curve: list[tuple[float, float, float]]) -> float | None:
    """How much the best dev BLEU of the seeds' mean curve rose in the last third of the
    updates: near 0 once the curve has flattened. None with fewer than two validations."""
    if len(curve) < 2:
        return None
    cut = curve[-1][0] * 2 / 3
    early = [bleu for step, _, bleu in curve if step <= cut]
    return max(bleu for *_, bleu in curve) - max(early) if early else None


def mean_curve(curves: list[list[dict[str, float]]]) -> list[tuple[float, float, float]]:
    """(step, minutes, dev BLEU) at the validation steps every seed has, averaged over the seeds."""
    if not curves:
        return []
    steps = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    at = [{p["step"]: p for p in c} for c in curves]
    return [
        (s, statistics.mean(c[s]["elapsed"] for c in at) / 60, statistics.mean(c[s]["dev_bleu"] for c in at))
        for s in steps
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    def number(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| cell | parameters | test BLEU (beam 5) | each seed | dev BLEU | dev BLEU gained, last third "
        "| updates | training tokens/s | s/update | s/epoch | decoding sentences/s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bleu, s = [b for _, b in r["test_bleu"]], r["speed"]
        seeds = ", ".join(f"{b:.2f} (seed {seed})" for seed, b in r["test_bleu"])
        seeds += "".join(f", failed (seed {seed})" for seed in r["failed"])
        lines.append(
            f"| {r['cell']} | {number(r['parameters'], 0)} | {number(statistics.mean(bleu) if bleu else None)} "
            f"| {seeds.lstrip(', ')} | {number(r['dev_bleu'])} | {number(late_gain(r['curve']))} "
            f"| {number(r['steps'], 0)} "
            f"| {number(s.get('tokens_per_s'), 0)} | {number(s.get('seconds_per_update'), 3)} "
            f"| {number(s.get('epoch_seconds'), 0)} | {number(s.get('decode_sentences_per_s'), 1)} |"
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
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for r in rows:
        if r["curve"]:
            steps, minutes, bleu = zip(*r["curve"])
            by_step.plot(steps, bleu, marker="o", markersize=3, label=r["cell"])
            by_time.plot(minutes, bleu, marker="o", markersize=3, label=r["cell"])
    by_step.set_xlabel("updates")
    by_time.set_xlabel("training wall-clock (minutes, validations included)")
    by_step.set_ylabel("dev BLEU (greedy; mean of the seeds)")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
