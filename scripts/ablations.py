#!/usr/bin/env python
"""Ablations of the recurrent-NMT practices of the literature on one base model, each trained
for the same short budget with several seeds.

    python scripts/ablations.py CONFIG --out-dir DIR [--rows forget_bias,dropout,...]
        [--seeds 1,2] [--steps N] [--validate-every K] [--jobs J] [--set KEY=VALUE ...]
    python scripts/ablations.py --out-dir DIR --report-only

Rows (``model.*``: the encoder and the decoder alike):

- ``forget_bias``: LSTM forget-gate bias 1 vs 0 (Gers et al. 2000; Jozefowicz et al. 2015);
- ``dropout``: variational vs plain dropout (Gal & Ghahramani 2016);
- ``residual``: residual connections on vs off in 4-layer stacks (Wu et al. 2016);
- ``layernorm``: layer-normalised cell vs the plain one (Ba et al. 2016), the base's cell;
- ``clipping``: gradient-norm clipping at 1.0 vs none (Pascanu et al. 2013).

Every variant's config is loaded and checked before anything trains (the base must be an LSTM
for ``forget_bias``). Variants with the same resolved config (the base itself, mostly) share
their runs. Each run is ``seq2seq train CONFIG`` in DIR/runs/NAME-sSEED with training.seed SEED,
max_steps N (no epoch or time limit, no early stop), validate_every K and threads 1, J at a
time; DIR/runs/NAME-sSEED.json is written as it ends (a run that finished with the same
settings is not run again; a failed one is). ``ablations.md``, rebuilt from DIR alone by ``--report-only``, gives per
variant: best dev BLEU (greedy validation; the mean and each seed), final dev loss, loss spikes
and the share of clipped updates (from metrics.jsonl; without clipping, the share above 1.0),
and updates/s (J runs shared the machine), each the mean over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from seq2seq.config import config_to_dict, load_config
from seq2seq.errors import ConfigError, Seq2SeqError


def both(key: str, value: object) -> list[str]:
    return [f"model.encoder.{key}={value}", f"model.decoder.{key}={value}"]


def rows(cell: str) -> dict[str, tuple[str, list[tuple[str, list[str]]]]]:
    """Row key -> (title, [(variant, overrides)]) for a base model with ``cell``."""
    plain = cell.removeprefix("layernorm_")
    return {
        "forget_bias": ("LSTM forget-gate bias", [("1", both("forget_bias", 1.0)), ("0", both("forget_bias", 0.0))]),
        "dropout": (
            "dropout",
            [("variational", both("dropout_type", "variational")), ("plain", both("dropout_type", "plain"))],
        ),
        "residual": (
            "residual connections (4 layers)",
            [("on", [*both("num_layers", 4), *both("residual", True)]), ("off", [*both("num_layers", 4)])],
        ),
        "layernorm": (
            "layer normalisation",
            [(f"layernorm_{plain}", both("cell", f"layernorm_{plain}")), (plain, both("cell", plain))],
        ),
        "clipping": (
            "gradient clipping",
            [("1.0", ["training.clip_grad_norm=1.0"]), ("off", ["training.clip_grad_norm=0"])],
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="the base run config (not needed with --report-only)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--rows", default=",".join(rows("lstm")), help="comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="1,2", help="comma-separated training seeds (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1000, help="updates per run (default: %(default)s)")
    parser.add_argument("--validate-every", type=int, default=250, help="updates (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="base config overrides")
    parser.add_argument("--report-only", action="store_true", help="tabulate the runs already in DIR")
    args = parser.parse_args(argv)
    try:
        return ablate(args)
    except (Seq2SeqError, OSError) as e:  # a config or run directory that cannot be used
        print(f"ablations.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ablations.py: interrupted; the same command continues with the runs not yet done", file=sys.stderr)
        return 130


def ablate(args: argparse.Namespace) -> int:
    out, failed = Path(args.out_dir), []
    if not args.report_only:
        if not args.config:
            raise ConfigError("give CONFIG, or --report-only to tabulate the runs in --out-dir")
        for name, value in (("--steps", args.steps), ("--validate-every", args.validate_every), ("--jobs", args.jobs)):
            if value < 1:
                raise ConfigError(f"{name}: {value} must be at least 1")
        seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
        if not seeds or not all(s.isdigit() for s in seeds):
            raise ConfigError(f"--seeds: {args.seeds!r}: give comma-separated non-negative integers, e.g. 1,2")
        plan = plan_runs(args)
        runs = {name: sets for _, _, name, sets in plan}
        jobs = [(name, sets, seed) for name, sets in runs.items() for seed in seeds]
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "plan.json", [{"row": r, "variant": v, "run": n} for r, v, n, _ in plan])
        pool = ThreadPoolExecutor(args.jobs)
        try:
            failed = [r for r in pool.map(lambda job: train(args, *job), jobs) if r]
        finally:  # on Ctrl-C, start no more runs (the running ones stop on the same signal)
            pool.shutdown(cancel_futures=True)
    table = report(out)
    print(table, end="")
    for line in failed:
        print(f"ablations.py: {line}", file=sys.stderr)
    return 1 if failed else 0


def plan_runs(args: argparse.Namespace) -> list[tuple[str, str, str, list[str]]]:
    """(row, variant, run name, overrides) for every variant of the chosen rows, each config
    loaded and checked; variants with the same resolved config share the first one's run."""
    base = load_config(args.config, args.set)
    cell = base.model.decoder.cell
    table = rows(cell)
    chosen = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in table]
    if unknown or not chosen:
        raise ConfigError(f"--rows: {unknown[0] if unknown else args.rows!r} is not one of {', '.join(table)}")
    if "forget_bias" in chosen and not {base.model.encoder.cell, cell} <= {"lstm", "layernorm_lstm", "lstm_peephole"}:
        raise ConfigError(f"--rows forget_bias: {args.config} must have LSTM cells (model.*.cell: lstm; has {cell})")
    names: dict[str, str] = {json.dumps(config_to_dict(base), sort_keys=True): "base"}
    plan = []
    for row in chosen:
        for variant, overrides in table[row][1]:
            try:
                config = load_config(args.config, [*args.set, *overrides])
            except ConfigError as e:
                raise ConfigError(f"--rows {row}, variant {variant}: {e}") from None
            name = names.setdefault(json.dumps(config_to_dict(config), sort_keys=True), f"{row}-{variant}")
            plan.append((row, variant, name, [*args.set, *overrides]))
    return plan


def train(args: argparse.Namespace, name: str, sets: list[str], seed: str) -> str:
    """Train one variant and seed unless its JSON holds these settings; returns what failed ('' if nothing)."""
    runs, run = Path(args.out_dir) / "runs", f"{name}-s{seed}"
    sets = [
        *sets,
        f"training.seed={seed}",
        f"training.max_steps={args.steps}",
        "training.max_epochs=0",
        "training.max_minutes=0",
        "training.patience=0",
        f"training.validate_every={args.validate_every}",
        "training.threads=1",
    ]
    settings = {"config": str(args.config), "set": sets}
    result_path, run_dir = runs / f"{run}.json", runs / run
    if result_path.exists():  # done before: not again, unless it failed or its settings differ
        previous = json.loads(result_path.read_text(encoding="utf-8"))
        if previous.get("settings") == settings and "error" not in previous:
            return ""
    runs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "seq2seq", "train", args.config, "--run-dir", str(run_dir), "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (runs / f"{run}.log").open("w", encoding="utf-8") as log:
        done = subprocess.run([*cmd, *(x for s in sets for x in ("--set", s))], stdout=log, stderr=log, env=env)
    result: dict[str, Any] = {"run": name, "seed": int(seed), "settings": settings}
    if done.returncode:  # a diverged run is a result too: its table cell says so
        result["error"] = f"{run} failed (exit {done.returncode}); see {runs / f'{run}.log'}"
    else:
        from seq2seq.train.logs import read_metrics, summarize_metrics

        result.update(summarize_metrics(read_metrics(run_dir / "metrics.jsonl")))
    _write_json(result_path, result)
    error = str(result.get("error", ""))
    print(f"{run}: " + (error or f"best dev BLEU {result['best_dev_bleu']:.2f}"), flush=True)
    return error


def _write_json(path: Path, value: Any) -> None:
    """``value`` as strict JSON (a non-finite number as null), written atomically."""
    from seq2seq.atomic import atomic_open

    def plain(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(plain(value), indent=1, allow_nan=False) + "\n")


def report(out: Path) -> str:
    """Write DIR/ablations.md from DIR/plan.json and DIR/runs/*.json; the table."""
    plan_path = out / "plan.json"
    if not plan_path.exists():
        raise ConfigError(f"{plan_path}: no ablation plan to report; run without --report-only first")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "runs").glob("*.json"))]
    titles = {key: title for key, (title, _) in rows("lstm").items()}
    lines = [
        "| ablation | variant | dev BLEU | each seed | final dev loss | loss spikes | clip rate | updates/s |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for entry in plan:
        runs = sorted((r for r in results if r["run"] == entry["run"]), key=lambda r: r["seed"])
        lines.append(f"| {titles.get(entry['row'], entry['row'])} | {entry['variant']} | " + cells(runs) + " |")
    table = "\n".join(lines) + "\n"
    (out / "ablations.md").write_text(table, encoding="utf-8")
    return table


def cells(runs: list[dict[str, Any]]) -> str:
    """The figures of one variant's runs: each the mean over the seeds that finished."""
    ok = [r for r in runs if "error" not in r]

    def mean(key: str, digits: int) -> str:
        values = [r[key] for r in ok if r.get(key) is not None]
        return f"{statistics.mean(values):.{digits}f}" if values else "–"

    seeds = [f"{r['best_dev_bleu']:.2f} (seed {r['seed']})" for r in ok if r.get("best_dev_bleu") is not None]
    seeds += [f"failed (seed {r['seed']})" for r in runs if "error" in r]
    figures = [mean("best_dev_bleu", 2), ", ".join(seeds) or "–", mean("final_dev_loss", 3), mean("loss_spikes", 1)]
    return " | ".join([*figures, mean("clip_rate", 2), mean("updates_per_s", 2)])


if __name__ == "__main__":
    sys.exit(main())
