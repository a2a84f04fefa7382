"""Helpers of what training shows: the loss, throughput and stability of a log line, a
progress bar on a terminal, and TensorBoard where it is installed."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# The threshold clip_rate counts against when training.clip_grad_norm is 0 (no clipping): the
# share of updates that clipping at 1.0, a common setting, would have clipped.
UNCLIPPED_THRESHOLD = 1.0


class Window:
    """What training did since the last log line (rank 0's view for the norms and spikes).

    :meth:`flush` gives the per-token ``loss`` and ``tokens_per_s`` of the window, and, over
    its applied updates (a skipped, non-finite one has no norm to count):

    - ``grad_norm_median``, ``grad_norm_max``: the global gradient norm before clipping
      (Pascanu et al. 2013);
    - ``clip_rate``: the share of updates whose norm exceeded ``clip_grad_norm`` (clipping
      fired); with ``clip_grad_norm`` 0 (no clipping), the share above
      :data:`UNCLIPPED_THRESHOLD` that *would* have been clipped at 1.0, so that runs with
      and without clipping can be compared;
    - ``loss_spikes``: updates whose loss the divergence guard found far above its running
      average (:mod:`seq2seq.train.guard`).

    NaN where the window has nothing to report. The window is not saved in ``last.pt``: after
    ``--resume`` the first one covers the updates since the resume only.
    """

    def __init__(self, clip_grad_norm: float = 0.0) -> None:
        self.clip_at = clip_grad_norm if clip_grad_norm > 0 else UNCLIPPED_THRESHOLD
        self._reset()

    def _reset(self) -> None:
        self.start, self.loss, self.targets, self.tokens = time.perf_counter(), 0.0, 0, 0
        self.norms: list[float] = []
        self.spikes = 0

    def add(self, loss: float, targets: int, tokens: int, grad_norm: float = math.nan, spike: bool = False) -> None:
        """One update: its summed ``loss`` over ``targets`` target tokens (0 and 0 for a skipped
        update), its real source and target ``tokens``, its pre-clip ``grad_norm`` and whether
        its loss was a ``spike``."""
        self.loss, self.targets, self.tokens = self.loss + loss, self.targets + targets, self.tokens + tokens
        if math.isfinite(grad_norm):
            self.norms.append(grad_norm)
        self.spikes += spike

    def flush(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        norms = self.norms
        # NaN where every update of the window was skipped (guard.py): no loss to report
        out = {
            "loss": self.loss / self.targets if self.targets else math.nan,
            "tokens_per_s": self.tokens / seconds,
            "grad_norm_median": statistics.median(norms) if norms else math.nan,
            "grad_norm_max": max(norms) if norms else math.nan,
            "clip_rate": sum(n > self.clip_at for n in norms) / len(norms) if norms else math.nan,
            "loss_spikes": self.spikes,
        }
        self._reset()
        return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``, with the strings ``"nan"``, ``"inf"`` and
    ``"-inf"`` of :func:`~seq2seq.train.guard.strict_json` read back as floats."""

    def number(value: Any) -> Any:
        return float(value) if value in ("nan", "inf", "-inf") else value

    lines = path.read_text(encoding="utf-8").splitlines()
    return [{k: number(v) for k, v in json.loads(line).items()} for line in lines if line.strip()]


def summarize_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures from its ``metrics.jsonl`` records (:func:`read_metrics`), for
    experiment tables: ``steps``; ``dev`` (each validation's step, elapsed seconds, dev BLEU and
    loss); ``best_dev_bleu`` and ``final_dev_loss``; over the training windows, the median
    ``tokens_per_s``, ``updates_per_s`` (median over consecutive windows, so that the windows a
    validation fell in do not count), ``loss_spikes`` (summed), ``clip_rate`` (mean over the
    windows, weighted by their updates) and ``grad_norm_median`` (median of the windows')."""
    train = [r for r in records if "tokens_per_s" in r]
    dev = [r for r in records if "dev_bleu" in r]
    rates = [
        (b["step"] - a["step"]) / (b["elapsed"] - a["elapsed"])
        for a, b in itertools.pairwise(train)
        if b["elapsed"] > a["elapsed"]
    ]
    clipped = [(r["clip_rate"], r["step"] - prev) for prev, r in zip([0, *(t["step"] for t in train)], train)]
    clipped = [(rate, n) for rate, n in clipped if math.isfinite(rate)]
    norms = [r["grad_norm_median"] for r in train if math.isfinite(r.get("grad_norm_median", math.nan))]
    return {
        "steps": max((r["step"] for r in records), default=0),
        "dev": [{k: r[k] for k in ("step", "elapsed", "dev_bleu", "dev_loss")} for r in dev],
        "best_dev_bleu": max((r["dev_bleu"] for r in dev), default=math.nan),
        "final_dev_loss": dev[-1]["dev_loss"] if dev else math.nan,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train) if train else math.nan,
        "updates_per_s": statistics.median(rates) if rates else math.nan,
        "loss_spikes": sum(int(r.get("loss_spikes", 0)) for r in train),
        "clip_rate": sum(c * n for c, n in clipped) / sum(n for _, n in clipped) if clipped else math.nan,
        "grad_norm_median": statistics.median(norms) if norms else math.nan,
    }


def progress_bar(total: int, initial: int) -> Any:
    """A tqdm bar on a terminal, else None (the log has the same lines)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total or None, initial=initial, unit="step", dynamic_ncols=True)


def tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
