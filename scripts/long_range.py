#!/usr/bin/env python
"""How far back can each recurrent cell carry a token? Train a classifier per cell to name
the first token of a sequence after L distractors, for several L, with the same budget
(updates, batch size, one thread), and tabulate held-out accuracy against L.

    python scripts/long_range.py --out-dir DIR [--cells rnn,gru,...] [--distances 5,10,...]
                                 [--seeds 0,1] [--steps N] [--jobs N] [--report-only]

Written to DIR: one ``long_range-CELL-L<L>-seed<S>.json`` per run as it finishes (a run
already saved with the same settings is not run again, so an interrupted experiment goes on
where it stopped); ``long_range.md``, the accuracy table (mean over seeds, each seed in
brackets, chance level below); ``long_range.png``, accuracy against L, one line per cell,
chance dashed (needs matplotlib: ``pip install -e '.[plot]'``). ``--report-only`` rebuilds
both from the JSON results in DIR. The task and model: :mod:`seq2seq.analysis.long_range`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seq2seq.analysis import long_range
from seq2seq.analysis.report import accuracy_table, plot_accuracy, write_report
from seq2seq.analysis.runs import Run, checked_cells, int_list, read_results, run_all, script_parser
from seq2seq.errors import Seq2SeqError
from seq2seq.models.custom_cells import RECURRENT_INITS

PREFIX = "long_range-"


def main(argv: list[str] | None = None) -> int:
    default = long_range.LongRangeSettings()
    parser = script_parser(__doc__)
    parser.add_argument("--distances", type=int_list, default=[5, 10, 20, 50, 100, 200])
    parser.add_argument("--steps", type=int, default=default.steps, help="updates per run")
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--hidden-size", type=int, default=default.hidden_size)
    parser.add_argument("--learning-rate", type=float, default=default.learning_rate)
    parser.add_argument("--forget-bias", type=float, default=default.forget_bias, help="LSTM cells")
    parser.add_argument("--recurrent-init", default=default.recurrent_init, choices=RECURRENT_INITS)
    parser.add_argument("--eval-sequences", type=int, default=default.eval_sequences)
    args = parser.parse_args(argv)
    cells = checked_cells(parser, args)
    try:
        settings = long_range.LongRangeSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            hidden_size=args.hidden_size,
            learning_rate=args.learning_rate,
            forget_bias=args.forget_bias,
            recurrent_init=args.recurrent_init,
            eval_sequences=args.eval_sequences,
        )
        if min(args.distances) < 1:
            raise ValueError(f"distances must be at least 1, got {min(args.distances)}")
    except ValueError as e:
        parser.error(str(e))
    try:
        if not args.report_only:
            experiment(args.out_dir, cells, args.distances, args.seeds, settings, args.jobs)
        return report(args.out_dir)
    except (Seq2SeqError, OSError) as e:  # an unreadable result, a file that cannot be written
        print(f"long_range.py: error: {e}", file=sys.stderr)
        return 2


def experiment(
    out: Path,
    cells: list[str],
    distances: list[int],
    seeds: list[int],
    settings: long_range.LongRangeSettings,
    jobs: int,
) -> None:
    # Longest runs first, so that the last ones to finish are short and the processes end together.
    runs = [
        Run(f"{PREFIX}{cell}-L{d}-seed{seed}", long_range.run, (cell, d, seed, settings), settings.to_dict())
        for d in sorted(distances, reverse=True)
        for cell in cells
        for seed in seeds
    ]

    def done(name: str, result: dict) -> None:
        print(f"{name}: accuracy {result['accuracy']:.3f}, {result['seconds']:.0f} s", flush=True)

    ran = run_all(runs, out, jobs, done)
    print(f"{ran} runs ran, {len(runs) - ran} were already in {out}")


def report(out: Path) -> int:
    results = read_results(out, PREFIX)
    print(
        "\n".join(write_report(out, "long_range", accuracy_table(results), lambda path: plot_accuracy(results, path)))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
