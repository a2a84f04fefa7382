"""Helpers of what training shows: the loss and throughput of a log line, a progress bar on a
terminal, and TensorBoard where it is installed."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any


class Window:
    """Loss and throughput since the last log line."""

    def __init__(self) -> None:
        self.start, self.loss, self.targets, self.tokens = time.perf_counter(), 0.0, 0, 0

    def add(self, loss: float, targets: int, tokens: int) -> None:
        self.loss, self.targets, self.tokens = self.loss + loss, self.targets + targets, self.tokens + tokens

    def flush(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        # NaN where every update of the window was skipped (guard.py): no loss to report
        out = {"loss": self.loss / self.targets if self.targets else math.nan, "tokens_per_s": self.tokens / seconds}
        self.__init__()  # type: ignore[misc]
        return out


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
