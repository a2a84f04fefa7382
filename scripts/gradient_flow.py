#!/usr/bin/env python
"""How far back does the loss's gradient reach in each recurrent cell? Measure ‖∂L/∂h_t‖
against the distance from the loss on the long-range task of ``scripts/long_range.py``
at one distance, at initialisation and after the same training.

    python scripts/gradient_flow.py --out-dir DIR [--cells rnn,gru,...] [--distance 50]
                                    [--seeds 0,1] [--steps N] [--jobs N] [--report-only]

Written to DIR: one ``gradient_flow-CELL-L<L>-seed<S>.json`` per run as it finishes (the
norms at every distance; a run already saved with the same settings is not run again);
``gradient_flow.md``, the norms at a few distances per cell, initial and trained, with the
trained accuracy; ``gradient_flow.png``, the norms against the distance on a log scale, one
colour per cell, initial dashed and trained solid (needs matplotlib). ``--report-only``
rebuilds both from the JSON results in DIR. The measurement:
:func:`seq2seq.analysis.gradient_flow.state_gradients`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.analysis import gradient_flow
from seq2seq.analysis.long_range import LongRangeSettings
from seq2seq.analysis.report import gradient_table, plot_gradient_flow, write_report
from seq2seq.analysis.runs import Run, checked_cells, read_results, run_all, script_parser
from seq2seq.errors import Seq2SeqError

PREFIX = "gradient_flow-"


def main(argv: list[str] | None = None) -> int:
    default = LongRangeSettings()
    parser = script_parser(__doc__)
    parser.add_argument("--distance", type=int, default=50, help="the task's L (the loss is L steps after the answer)")
    parser.add_argument("--steps", type=int, default=default.steps, help="training updates per run")
    parser.add_argument("--sequences", type=int, default=256, help="held-out sequences the norms average over")
    parser.add_argument("--forget-bias", type=float, default=default.forget_bias, help="LSTM cells")
    args = parser.parse_args(argv)
    cells = checked_cells(parser, args)
    if args.distance < 1 or args.sequences < 1:
        parser.error("--distance and --sequences must each be at least 1")
    try:
        settings = LongRangeSettings(steps=args.steps, forget_bias=args.forget_bias)
    except ValueError as e:
        parser.error(str(e))
    try:
        if not args.report_only:
            experiment(args, cells, settings)
        return report(args.out_dir)
    except (Seq2SeqError, OSError) as e:  # an unreadable result, a file that cannot be written
        print(f"gradient_flow.py: error: {e}", file=sys.stderr)
        return 2


def experiment(args: argparse.Namespace, cells: list[str], settings: LongRangeSettings) -> None:
    shared = gradient_flow.result_settings(settings, args.distance, args.sequences)
    runs = [
        Run(
            f"{PREFIX}{cell}-L{args.distance}-seed{seed}",
            gradient_flow.run,
            (cell, args.distance, seed, settings, args.sequences),
            shared,
        )
        for cell in cells
        for seed in args.seeds
    ]

    def done(name: str, result: dict) -> None:
        init, trained = result["init"], result["trained"]
        print(
            f"{name}: ‖∂L/∂h‖ {init[-1]:.1e} -> {trained[-1]:.1e} at d={len(init) - 1}, "
            f"accuracy {result['accuracy']:.3f}",
            flush=True,
        )

    ran = run_all(runs, args.out_dir, args.jobs, done)
    print(f"{ran} runs ran, {len(runs) - ran} were already in {args.out_dir}")


def report(out: Path) -> int:
    results = read_results(out, PREFIX)
    print(
        "\n".join(
            write_report(out, "gradient_flow", gradient_table(results), lambda path: plot_gradient_flow(results, path))
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
