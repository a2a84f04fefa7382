"""Tables (markdown) and plots (PNG) of the two experiments' saved results.

The inputs are the dicts of :meth:`LongRangeResult.to_dict
<seq2seq.analysis.long_range.LongRangeResult.to_dict>` and :meth:`GradientFlowResult.to_dict
<seq2seq.analysis.gradient_flow.GradientFlowResult.to_dict>`, as
:func:`seq2seq.analysis.runs.read_results` returns them. Cells are listed in the order of
:data:`seq2seq.config.CELLS`; a figure over seeds is their mean. Drawing needs matplotlib,
the optional extra ``plot``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seq2seq.config import CELLS
from seq2seq.errors import MissingExtraError

__all__ = ["accuracy_table", "gradient_table", "plot_accuracy", "plot_gradient_flow"]

Result = dict[str, Any]


def _cells(results: Sequence[Result]) -> list[str]:
    present = {r["cell"] for r in results}
    return [c for c in CELLS if c in present] + sorted(present - set(CELLS))


def _seeds(results: Sequence[Result]) -> str:
    seeds = sorted({r["seed"] for r in results})
    return ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds))


def _settings_line(settings: dict[str, Any]) -> str:
    s = settings
    return (
        f"{s['steps']} Adam updates of {s['batch_size']} sequences (learning rate {s['learning_rate']:g}, "
        f"gradient norm clipped to {s['clip_grad_norm']:g}), hidden size {s['hidden_size']}, "
        f"embedding {s['embedding_dim']}, {s['vocab_size']} answer symbols, forget bias {s['forget_bias']:g}, "
        f"{s['recurrent_init']} recurrent init"
    )


def accuracy_table(results: Sequence[Result]) -> str:
    """Cells down, distances across; each entry the mean held-out accuracy over seeds,
    then each seed's in seed order."""
    if not results:
        return "no results\n"
    by_run: dict[tuple[str, int], list[Result]] = defaultdict(list)
    for r in results:
        by_run[r["cell"], r["distance"]].append(r)
    distances = sorted({r["distance"] for r in results})
    lines = [
        "| cell | " + " | ".join(f"L={d}" for d in distances) + " |",
        "|---|" + "---:|" * len(distances),
    ]
    for cell in _cells(results):
        entries = []
        for d in distances:
            runs = sorted(by_run.get((cell, d), []), key=lambda r: r["seed"])
            accs = [r["accuracy"] for r in runs]
            entries.append(f"{statistics.mean(accs):.3f} ({', '.join(f'{a:.2f}' for a in accs)})" if accs else "–")
        lines.append(f"| {cell} | " + " | ".join(entries) + " |")
    first = results[0]
    lines += [
        "",
        f"Held-out accuracy ({first['settings']['eval_sequences']} sequences) naming the token L steps back: "
        f"mean over {_seeds(results)} (each seed in brackets). Chance: {first['chance']:.3f}.",
        f"Each run: {_settings_line(first['settings'])}.",
    ]
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float) -> Any:
    try:
        # Imported here: matplotlib is an optional extra. The Agg canvas draws without a display.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(
            "matplotlib is not installed: pip install matplotlib (or the extra: pip install 'seq2seq-rnn[plot]')"
        ) from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_accuracy(results: Sequence[Result], path: Path) -> None:
    """Held-out accuracy against the distance L (log scale), one line per cell (the mean
    over seeds; each seed a dot), chance level dashed; written to the PNG ``path``."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    for cell in _cells(results):
        runs = [r for r in results if r["cell"] == cell]
        distances = sorted({r["distance"] for r in runs})
        means = [statistics.mean(r["accuracy"] for r in runs if r["distance"] == d) for d in distances]
        (line,) = ax.plot(distances, means, marker="o", markersize=3, label=cell)
        ax.scatter([r["distance"] for r in runs], [r["accuracy"] for r in runs], s=6, color=line.get_color(), alpha=0.5)
    if results:
        ax.axhline(results[0]["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ticks = sorted({r["distance"] for r in results})
    ax.set_xticks(ticks, [str(d) for d in ticks])  # the measured distances, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel("distance L (tokens between the answer and the prediction)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _mean_curve(runs: Sequence[Result], key: str) -> list[float]:
    return [statistics.mean(values) for values in zip(*(r[key] for r in runs))]


def gradient_table(results: Sequence[Result], distances: Sequence[int] = (0, 1, 5, 10, 20, 50, 100, 200)) -> str:
    """Cells down (at initialisation, then trained), distances from the loss across (those
    within the measured length); each entry the mean over seeds of ‖∂L/∂h‖."""
    if not results:
        return "no results\n"
    length = min(len(r["init"]) for r in results)
    shown = [d for d in distances if d < length]
    lines = [
        "| cell | weights | " + " | ".join(f"d={d}" for d in shown) + " | accuracy |",
        "|---|---|" + "---:|" * (len(shown) + 1),
    ]
    for cell in _cells(results):
        runs = [r for r in results if r["cell"] == cell]
        accuracy = statistics.mean(r["accuracy"] for r in runs)
        for key, label, acc in (("init", "initial", "–"), ("trained", "trained", f"{accuracy:.3f}")):
            curve = _mean_curve(runs, key)
            lines.append(f"| {cell} | {label} | " + " | ".join(f"{curve[d]:.2e}" for d in shown) + f" | {acc} |")
    first = results[0]
    lines += [
        "",
        f"‖∂L/∂h‖ for the state d steps before the loss, the cross-entropy of the first-token task at "
        f"L={first['distance']}, per sequence, mean over {first['settings']['sequences']} held-out sequences "
        f"and {_seeds(results)}; accuracy: held-out, after training.",
        f"Training: {_settings_line(first['settings'])}.",
    ]
    return "\n".join(lines) + "\n"


def plot_gradient_flow(results: Sequence[Result], path: Path) -> None:
    """‖∂L/∂h‖ against the distance from the loss (log scale), one colour per cell, at
    initialisation dashed and after training solid (means over seeds); written to ``path``."""
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot()
    for cell in _cells(results):
        runs = [r for r in results if r["cell"] == cell]
        (line,) = ax.plot(_mean_curve(runs, "trained"), label=cell)
        ax.plot(_mean_curve(runs, "init"), linestyle="--", color=line.get_color())
    ax.plot([], [], linestyle="--", color="grey", label="dashed: at initialisation")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss (steps)")
    ax.set_ylabel("‖∂L/∂h‖ per sequence (solid: trained)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(out: Path, name: str, table: str, plot: Callable[[Path], None]) -> list[str]:
    """Write ``table`` to ``out/NAME.md`` and draw ``plot`` into ``out/NAME.png``; returns what
    to tell the user: the table, where each file went, or why there is no plot."""
    (out / f"{name}.md").write_text(table, encoding="utf-8")
    lines = [table.rstrip("\n"), f"table: {out / f'{name}.md'}"]
    try:
        plot(out / f"{name}.png")
        lines.append(f"plot: {out / f'{name}.png'}")
    except MissingExtraError as e:
        lines.append(f"no plot: {e}")
    return lines
