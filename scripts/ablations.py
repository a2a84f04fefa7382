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
import statistics
import sys
from pathlib import Path
from typing import Any

from seq2seq.config import config_to_dict, load_config
from seq2seq.errors import ConfigError
from seq2seq.train import experiment


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
    parser = experiment.parser(__doc__, steps=1000)
    parser.add_argument("--rows", default=",".join(rows("lstm")), help="comma-separated (default: %(default)s)")
    args = parser.parse_args(argv)
    status, table, errors = experiment.outcome("ablations.py", ablate, args)
    print(table, end="")
    for line in errors:
        print(line, file=sys.stderr)
    return status


def ablate(args: argparse.Namespace) -> tuple[str, list[str]]:
    out, failed = Path(args.out_dir), []
    if not args.report_only:
        seeds = experiment.check_flags(args)
        plan = plan_runs(args)
        variants = {name: sets for _, _, name, sets in plan}
        runs = [
            experiment.TrainingRun(
                f"{name}-s{seed}",
                args.config,
                (*sets, *experiment.budget(seed, args.steps, args.validate_every)),
                {"run": name, "seed": seed},
            )
            for name, sets in variants.items()
            for seed in seeds
        ]
        out.mkdir(parents=True, exist_ok=True)
        experiment.write_json(out / "plan.json", [{"row": r, "variant": v, "run": n} for r, v, n, _ in plan])
        failed = experiment.run_trainings(runs, out / "runs", args.jobs, on_done=_print_run)
    return report(out), failed


def plan_runs(args: argparse.Namespace) -> list[tuple[str, str, str, list[str]]]:
    """(row, variant, run name, overrides) for every variant of the chosen rows, each config
    loaded and checked; variants with the same resolved config share one run (the base
    config's is ``base``, with no overrides of its own)."""
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
    sets_of: dict[str, list[str]] = {"base": [*args.set]}
    plan = []
    for row in chosen:
        for variant, overrides in table[row][1]:
            try:
                config = load_config(args.config, [*args.set, *overrides])
            except ConfigError as e:
                raise ConfigError(f"--rows {row}, variant {variant}: {e}") from None
            name = names.setdefault(json.dumps(config_to_dict(config), sort_keys=True), f"{row}-{variant}")
            # a shared run trains with its first overrides (the base with none), whichever rows are chosen
            sets = sets_of.setdefault(name, [*args.set, *overrides])
            plan.append((row, variant, name, sets))
    return plan


def _print_run(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: " + result.get("error", f"best dev BLEU {result['best_dev_bleu']:.2f}"), flush=True)


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
