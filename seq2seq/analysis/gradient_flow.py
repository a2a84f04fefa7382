"""How far back a loss's gradient reaches: the norm of ∂L/∂h_t at every step t.

Bengio, Simard & Frasconi (1994) and Pascanu, Mikolov & Bengio (2013, Sec. 2) write the
gradient that reaches the state h_t from a loss at step T as a product of T − t Jacobians,

    ∂L/∂h_t = (∂h_{t+1}/∂h_t)ᵀ ··· (∂h_T/∂h_{T−1})ᵀ ∂L/∂h_T,

which shrinks (or grows) geometrically with the distance T − t unless the Jacobians stay
near norm one, as the LSTM's cell path does when its forget gate is open (Hochreiter &
Schmidhuber 1997; Gers et al. 2000). :func:`state_gradients` measures it for any layer of
:mod:`seq2seq.models.cells`: the layer runs one step at a time over (N, 1, I) slices,
carrying its state, and the gradient is taken with respect to each step's state tensors.
For a linear recurrence h_t = W h_{t−1} + U x_t and L = c·h_T it is (Wᵀ)^{T−t} c.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.analysis.long_range import (
    FirstTokenClassifier,
    LongRangeSettings,
    build,
    evaluate,
    generator,
    make_batch,
    train,
)
from seq2seq.models.stack import Recurrent

__all__ = [
    "GradientFlowResult",
    "classifier_gradient_norms",
    "gradient_norms",
    "result_settings",
    "run",
    "state_gradients",
]


def state_gradients(layer: Recurrent, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """The gradient of ``loss_fn(h_T)`` with respect to every state of ``layer`` over x.

    ``layer``: a unidirectional layer of the :mod:`seq2seq.models.cells` interface;
    x: (N, T, I), taken as a constant; ``loss_fn``: the final top-layer h (N, S_0) -> a
    scalar. Returns, per state tensor k (h; and c for the LSTMs), a (N, T, num_layers·S_k)
    tensor whose [:, t - 1] is ∂L/∂s_t, s_t the state after step t (t = 1..T): the total
    derivative through every later step, each state tensor taken as a variable of its own
    (so an LSTM's last c, which the loss does not read, gets zero). The layer's parameter
    gradients are untouched."""
    if getattr(layer, "num_directions", 1) != 1:
        raise ValueError("state_gradients runs a layer forward one step at a time: it needs a unidirectional layer")
    if x.dim() != 3 or x.size(1) < 1:
        raise ValueError(f"x must be (N, T, I) with T >= 1, got shape {tuple(x.shape)}")
    n, steps = x.size(0), x.size(1)
    # A zero start that requires grad makes every later state part of the graph, even for
    # a layer whose parameters do not require grad.
    state = tuple(x.new_zeros(n, layer.num_layers, size).requires_grad_() for size in layer.state_sizes)
    x = x.detach()
    kept = []
    with torch.enable_grad():
        for t in range(steps):
            _, state = layer(x[:, t : t + 1], state)
            kept.append(state)
        loss = loss_fn(state[0][:, -1])
        flat = [s for step in kept for s in step]
        grads = torch.autograd.grad(loss, flat, allow_unused=True, materialize_grads=True)
    k = len(layer.state_sizes)
    return [torch.stack([g.reshape(n, -1) for g in grads[i::k]], dim=1) for i in range(k)]


def gradient_norms(layer: Recurrent, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """(num_states, T): the mean over the batch of the per-sequence norm ‖∂L/∂s_t‖, state
    tensor k in row k, step t = 1..T in column t - 1 (the distance from the loss is T - t).
    With a ``loss_fn`` that sums over the batch, each sequence's norm is that of its own
    loss's gradient."""
    return torch.stack([g.norm(dim=-1).mean(0) for g in state_gradients(layer, x, loss_fn)])


def classifier_gradient_norms(model: FirstTokenClassifier, tokens: Tensor, answers: Tensor) -> Tensor:
    """:func:`gradient_norms` of ``model``'s recurrent layer under its cross-entropy on
    ``answers`` (summed over the batch), for tokens (N, T) -> (num_states, T)."""

    def loss(h: Tensor) -> Tensor:
        return F.cross_entropy(model.head(h), answers, reduction="sum")

    return gradient_norms(model.recurrent, model.embedding(tokens), loss)


@dataclass(frozen=True)
class GradientFlowResult:
    """One cell at one seed: ‖∂L/∂h‖ (and ‖∂L/∂c‖ for the LSTMs; None otherwise) at
    initialisation and after training, indexed by the distance from the loss (index d: the
    state d steps before the last, d = 0..distance), and the trained model's accuracy."""

    cell: str
    distance: int
    seed: int
    init: list[float]
    trained: list[float]
    init_c: list[float] | None
    trained_c: list[float] | None
    accuracy: float
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradientFlowResult:
        """Rebuild from :meth:`to_dict`; KeyError or TypeError when a field is missing or extra."""
        return cls(**data)


def result_settings(settings: LongRangeSettings, distance: int, sequences: int) -> dict[str, Any]:
    """What every run of one gradient-flow experiment shares, as its results record it."""
    return {**settings.to_dict(), "distance": distance, "sequences": sequences}


def run(cell: str, distance: int, seed: int, settings: LongRangeSettings, sequences: int = 256) -> GradientFlowResult:
    """Measure ``cell``'s gradient norms on ``sequences`` held-out sequences of the
    long-range task at ``distance``, at initialisation and after training as
    :func:`seq2seq.analysis.long_range.run` does."""
    model = build(cell, seed, settings)
    tokens, answers = make_batch(sequences, distance, settings.vocab_size, generator(seed, held_out=True))
    before = classifier_gradient_norms(model, tokens, answers).flip(-1).tolist()
    s = settings
    train(model, distance, s.steps, s.batch_size, s.learning_rate, s.clip_grad_norm, generator(seed))
    after = classifier_gradient_norms(model, tokens, answers).flip(-1).tolist()
    accuracy = evaluate(model, distance, s.eval_sequences, generator(seed, held_out=True))
    return GradientFlowResult(
        cell=cell,
        distance=distance,
        seed=seed,
        init=before[0],
        trained=after[0],
        init_c=before[1] if len(before) > 1 else None,
        trained_c=after[1] if len(after) > 1 else None,
        accuracy=accuracy,
        settings=result_settings(settings, distance, sequences),
    )
