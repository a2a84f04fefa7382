"""One sentence's attention weights as a labelled grey-scale heatmap (PNG).

The input is one file written by ``seq2seq translate --attention-dir DIR``
(``DIR/{line:06d}.json``, lines counted from 0)::

    {"line": int, "source": [piece, ..., "</s>"], "target": [piece, ..., "</s>"],
     "weights": [[float] * len(source)] * len(target)}

Row i of ``weights`` is the attention of target position i over the source positions.
As in Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to Align and
Translate", figure 3: source pieces along the x axis (on top, rotated), target pieces down
the y axis, weight 0 black and 1 white. The figure grows with the sentence lengths.

Drawing needs matplotlib, the optional extra ``plot`` (``pip install 'seq2seq-rnn[plot]'``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.atomic import atomic_open
from seq2seq.errors import DataError, MissingExtraError, output_error

INCHES_PER_PIECE = 0.3  # room for one rotated or horizontal label at the default font size


@dataclass
class Attention:
    line: int | None
    source: list[str]
    target: list[str]
    weights: list[list[float]]  # len(target) rows of len(source) columns


def _pieces(data: dict[str, Any], key: str, path: Path) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise DataError(f"{path}: {key!r} must be a non-empty list of strings")
    return value


def read_attention(path: Path) -> Attention:
    """Read and check one attention file: shape len(target) x len(source), finite weights
    in [0, 1]; :class:`DataError` naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with source, target and weights")
    source, target = _pieces(data, "source", path), _pieces(data, "target", path)
    line = data.get("line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, int)):
        raise DataError(f"{path}: 'line' must be an integer, got {line!r}")
    weights = data.get("weights")
    if not isinstance(weights, list) or len(weights) != len(target):
        rows = len(weights) if isinstance(weights, list) else type(weights).__name__
        raise DataError(f"{path}: 'weights' must have one row per target piece ({len(target)}), got {rows}")
    for i, row in enumerate(weights):
        if not isinstance(row, list) or len(row) != len(source):
            cols = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(
                f"{path}: weights row {i} must have one column per source piece ({len(source)}), got {cols}"
            )
        for w in row:
            # A small tolerance above 1: the writer rounds, and softmax output can exceed 1 by an ulp.
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= 1.001:
                raise DataError(f"{path}: weights row {i} holds {w!r}, expected numbers in [0, 1]")
    return Attention(line, source, target, weights)


def plot_attention(att: Attention, output: Path, dpi: int = 150, title: str | None = None) -> None:
    """Draw ``att`` into the PNG ``output``, written atomically (a reader never sees a
    half-written file; a failed write leaves the old one)."""
    try:
        # Imported here: matplotlib is an optional extra. The Agg canvas draws without a
        # display and without pyplot's global state.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(
            "matplotlib is not installed: pip install matplotlib (or the extra: pip install 'seq2seq-rnn[plot]')"
        ) from None
    n_src, n_tgt = len(att.source), len(att.target)
    # Square cells, plus margins for the labels and the colour bar.
    fig = Figure(figsize=(max(4.0, 2.5 + INCHES_PER_PIECE * n_src), max(3.0, 1.5 + INCHES_PER_PIECE * n_tgt)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(att.weights, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    ax.set_xticks(range(n_src), att.source, rotation=90)
    ax.set_yticks(range(n_tgt), att.target)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.suptitle(title or (f"line {att.line}" if att.line is not None else ""), y=0.02, va="bottom", fontsize="small")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(output, e) from e
    with atomic_open(output) as f:
        # mkstemp makes the file owner-only; give the PNG the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(f.fileno(), 0o666 & ~umask)
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
