"""Divergence: updates with a non-finite loss or gradient norm are skipped, too many in a row
stop the run, non-finite weights are never written, and a loss far above its running average
is logged (and counted in the log window's ``loss_spikes``, :class:`~seq2seq.train.logs.Window`).
Also the strict-JSON form of a metrics record (no bare NaN or Infinity).

A skipped update leaves the weights and the optimizer's moments as they were (the gradients are
dropped), as mixed-precision training does for an overflowing step (Micikevicius et al. 2018):
one bad batch or a rare overflow costs an update, not the run. A learning rate that is far too
high makes every update non-finite, and ``training.max_bad_updates`` in a row end the run with
a :class:`~seq2seq.errors.TrainingError`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from seq2seq.errors import TrainingError

log = logging.getLogger(__name__)

# A loss this many times its running average is "far above" it; the average is an exponential
# one over about 1 / (1 - DECAY) updates, and warnings start once it has seen WARMUP updates.
SPIKE_FACTOR = 3.0
DECAY = 0.98
WARMUP = 20


@dataclass
class GuardState:
    """What the guard counts; saved in ``last.pt`` (``train_state["guard"]``) as plain data."""

    bad_in_row: int = 0  # consecutive skipped updates
    skipped: int = 0  # skipped updates in the whole run
    loss_average: float = 0.0  # running average of the per-token training loss
    seen: int = 0  # updates in that average


class DivergenceGuard:
    """Decides whether an update is applied, and keeps the counts of :class:`GuardState`."""

    def __init__(self, max_bad_updates: int, learning_rate: float = 0.0) -> None:
        self.max_bad_updates, self.learning_rate = max_bad_updates, learning_rate  # for the message
        self.state = GuardState()

    @staticmethod
    def finite(loss: float, grad_norm: float) -> bool:
        return math.isfinite(loss) and math.isfinite(grad_norm)

    def record(self, step: int, ok: bool, loss: float, grad_norm: float, last_saved: int | None) -> bool:
        """Count update ``step`` (``ok``: applied; else skipped, with its per-token ``loss`` and
        ``grad_norm`` for the log). Returns whether an applied update's loss was a spike (far
        above the running average; the log window counts them). Raises :class:`TrainingError`
        at ``max_bad_updates`` skipped in a row; ``last_saved`` is the step ``last.pt`` holds,
        for the message."""
        s = self.state
        if ok:
            s.bad_in_row = 0
            return self._watch(step, loss)
        s.bad_in_row, s.skipped = s.bad_in_row + 1, s.skipped + 1
        log.warning(
            "step %d: non-finite training loss (%s) or gradient norm (%s); update skipped (%d in a row, %d in all)",
            step,
            loss,
            grad_norm,
            s.bad_in_row,
            s.skipped,
        )
        if s.bad_in_row >= self.max_bad_updates:
            held = f"last.pt holds step {last_saved}" if last_saved is not None else "there is no last.pt yet"
            raise TrainingError(
                f"training diverged: {s.bad_in_row} updates in a row (to step {step}) had a non-finite loss or "
                f"gradient norm ({held}); lower training.learning_rate ({self.learning_rate:g}) or "
                "training.clip_grad_norm, or raise training.max_bad_updates"
            )
        return False

    def _watch(self, step: int, loss: float) -> bool:
        """Warn when ``loss`` (per token) is far above the running average of the losses before
        it; returns whether it was."""
        s = self.state
        spike = s.seen >= WARMUP and loss > SPIKE_FACTOR * s.loss_average
        if spike:
            log.warning("step %d: training loss %.4g is far above its running average %.4g", step, loss, s.loss_average)
        s.loss_average = loss if s.seen == 0 else DECAY * s.loss_average + (1 - DECAY) * loss
        s.seen += 1
        return spike

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state)

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """``None`` (a checkpoint written before the guard existed): counts from zero."""
        self.state = GuardState(**(state or {}))


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite (one device synchronisation)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def strict_json(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each non-finite float as the string ``"nan"``, ``"inf"`` or ``"-inf"``
    (``float()`` reads them back), so that ``json.dumps(..., allow_nan=False)`` accepts it and
    strict JSON readers can read the line."""
    return {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
