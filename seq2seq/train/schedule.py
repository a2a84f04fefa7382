"""Learning-rate schedule: linear warm-up, then constant, inverse square root, or decay on
plateau. Plain state (floats and ints), so it checkpoints as data."""

from __future__ import annotations

import math
from typing import Any


class Schedule:
    """lr(step) = base * warmup(step) * shape(step) * decay.

    - warm-up: linear from 0 to 1 over ``warmup_steps``;
    - ``constant``: shape 1; ``inverse_sqrt``: sqrt(warmup / step) after warm-up (Vaswani
      et al. 2017), sqrt(1 / step) without warm-up;
    - ``plateau``: ``decay`` is multiplied by ``factor`` after ``patience`` validations
      without improvement (as torch's ReduceLROnPlateau), never below ``min_lr``.
    """

    def __init__(
        self,
        base_lr: float,
        kind: str = "constant",
        warmup_steps: int = 0,
        factor: float = 0.5,
        patience: int = 2,
        min_lr: float = 0.0,
    ) -> None:
        if kind not in ("constant", "plateau", "inverse_sqrt"):
            raise ValueError(f"unknown schedule {kind!r}; choose constant, plateau or inverse_sqrt")
        self.base_lr, self.kind, self.warmup_steps = base_lr, kind, warmup_steps
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.decay = 1.0
        self.best = math.inf
        self.bad_validations = 0

    def lr(self, step: int) -> float:
        """Learning rate for update number ``step`` (1-based)."""
        scale = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "inverse_sqrt":
            scale *= math.sqrt(max(self.warmup_steps, 1) / max(step, self.warmup_steps, 1))
        return max(self.base_lr * scale * self.decay, self.min_lr if step > self.warmup_steps else 0.0)

    def observe(self, loss: float) -> None:
        """Report a validation score, lower is better (the dev loss, or minus dev BLEU);
        ``plateau`` decays on stagnation."""
        if loss < self.best:
            self.best, self.bad_validations = loss, 0
            return
        self.bad_validations += 1
        if self.kind == "plateau" and self.bad_validations > self.patience:
            self.decay *= self.factor
            self.bad_validations = 0

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.best, self.bad_validations = state["decay"], state["best"], state["bad_validations"]
