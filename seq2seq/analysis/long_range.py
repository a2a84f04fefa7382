"""A synthetic long-range dependency: name the first token of a sequence after L more.

The claim measured is the one behind Bengio, Simard & Frasconi (1994) and Hochreiter &
Schmidhuber (1997, Sec. 5, experiment 2): a plain (Elman) RNN cannot carry information
across many steps, gated cells can. The task is a variant of Hochreiter & Schmidhuber's
"noise-free sequences with long time lags" (their experiment 2a): a sequence of L + 1
tokens whose first is one of V answer symbols and whose other L (the distance) are drawn
from V other, distractor, symbols; the answer is the first token, named after reading the
other L. The symbols are uniform, so chance accuracy is 1/V and nothing but the first token
predicts the answer. (Distractors apart from the answers tell a cell which token to store;
with one shared set it would also have to learn that the first position is special, which
makes the task far slower to learn for every cell.)

The classifier (embedding -> one recurrent layer of :func:`seq2seq.models.cells.make_recurrent`
-> linear on the last output) is trained on fresh batches (no epochs, so held-out accuracy
measures what the cell carries, not memorisation) with
Adam and gradient-norm clipping; every cell gets the same number of updates of the same
batch size.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import CELLS
from seq2seq.models.cells import make_recurrent
from seq2seq.models.custom_cells import RECURRENT_INITS

__all__ = [
    "FirstTokenClassifier",
    "LongRangeResult",
    "LongRangeSettings",
    "build",
    "evaluate",
    "generator",
    "make_batch",
    "run",
    "train",
]

log = logging.getLogger(__name__)

HELD_OUT_SEED = 7  # the held-out stream is the same for every cell, distance and seed


@dataclass(frozen=True)
class LongRangeSettings:
    """What every run of the experiment shares. The defaults let 7 cells x 6 distances x 2
    seeds finish in about half an hour on two cores, one thread per run (see
    ``scripts/long_range.py``)."""

    steps: int = 600  # Adam updates, the same for every cell and distance
    batch_size: int = 64
    vocab_size: int = 10  # answer symbols (and as many distractors); chance accuracy is 1 / vocab_size
    embedding_dim: int = 32
    hidden_size: int = 64  # lstmp: hidden_size units, projected to hidden_size // 2
    forget_bias: float = 1.0  # LSTMs' forget-gate bias at initialisation (the package's default)
    recurrent_init: str = "default"  # or "orthogonal" (seq2seq.models.custom_cells.init_recurrent)
    learning_rate: float = 3e-3
    clip_grad_norm: float = 1.0  # the total gradient norm is clipped to this (Pascanu et al. 2013)
    eval_sequences: int = 1000  # held-out sequences per accuracy

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "embedding_dim", "hidden_size", "eval_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < 2:
            raise ValueError(
                f"vocab_size must be at least 2 (one symbol leaves nothing to remember), got {self.vocab_size}"
            )
        if self.hidden_size < 2:
            raise ValueError(f"hidden_size must be at least 2 (lstmp projects to half of it), got {self.hidden_size}")
        if self.recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"recurrent_init must be one of {', '.join(RECURRENT_INITS)}, got {self.recurrent_init!r}")
        if not self.learning_rate > 0 or not self.clip_grad_norm > 0:
            raise ValueError(
                f"learning_rate and clip_grad_norm must be positive, got {self.learning_rate}, {self.clip_grad_norm}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LongRangeResult:
    """One trained run: held-out ``accuracy`` (``chance`` = 1 / vocab_size), the mean
    training loss over the last tenth of the updates, training seconds, parameters."""

    cell: str
    distance: int
    seed: int
    accuracy: float
    chance: float
    final_loss: float
    seconds: float
    parameters: int
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LongRangeResult:
        """Rebuild from :meth:`to_dict`; KeyError or TypeError when a field is missing or extra."""
        return cls(**data)


def make_batch(batch_size: int, distance: int, vocab_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` sequences drawn from ``generator`` -> tokens (N, distance + 1) int64
    and answers (N,). Each sequence is an answer symbol in [0, vocab_size), the token
    ``distance`` steps before its last, then ``distance`` distractors in [vocab_size,
    2 * vocab_size), all uniform."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if distance < 1:
        raise ValueError(f"distance must be at least 1 (the answer is that many tokens back), got {distance}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
    answers = torch.randint(vocab_size, (batch_size,), generator=generator)
    distractors = torch.randint(vocab_size, 2 * vocab_size, (batch_size, distance), generator=generator)
    return torch.cat([answers[:, None], distractors], dim=1), answers


def generator(seed: int, held_out: bool = False) -> torch.Generator:
    """The data stream of a run's ``seed`` (training) or the held-out stream: even and odd
    seeds of torch's generator, so that the two never coincide."""
    return torch.Generator().manual_seed(2 * (HELD_OUT_SEED if held_out else seed) + int(held_out))


class FirstTokenClassifier(nn.Module):
    """Embedding -> one recurrent layer (``cell``, :data:`seq2seq.config.CELLS`) -> linear
    on the last output. tokens (N, T) -> logits (N, V). ``lstmp`` projects its
    ``hidden_size`` units to ``hidden_size // 2``, as :func:`seq2seq.config.cell_overrides` does."""

    def __init__(
        self,
        cell: str,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        forget_bias: float = 1.0,
        recurrent_init: str = "default",
    ) -> None:
        super().__init__()
        options: dict[str, Any] = {"forget_bias": forget_bias, "recurrent_init": recurrent_init}
        if cell == "lstmp":
            options["proj_size"] = hidden_size // 2
        self.embedding = nn.Embedding(2 * vocab_size, embedding_dim)
        self.recurrent = make_recurrent(cell, embedding_dim, hidden_size, **options)
        self.head = nn.Linear(self.recurrent.output_size, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        output, _ = self.recurrent(self.embedding(tokens))
        return self.head(output[:, -1])


def train(
    model: FirstTokenClassifier,
    distance: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    clip_grad_norm: float,
    data: torch.Generator,
) -> list[float]:
    """Train ``model`` for ``steps`` Adam updates on fresh batches from ``data``, the total
    gradient norm clipped to ``clip_grad_norm``; returns the loss of every update."""
    vocab_size = model.head.out_features
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        tokens, answers = make_batch(batch_size, distance, vocab_size, data)
        loss = F.cross_entropy(model(tokens), answers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate(model: FirstTokenClassifier, distance: int, sequences: int, data: torch.Generator) -> float:
    """Accuracy of ``model`` on ``sequences`` sequences drawn from ``data``."""
    model.eval()
    vocab_size, correct = model.head.out_features, 0
    for start in range(0, sequences, 500):  # chunks bound the memory at long distances
        tokens, answers = make_batch(min(500, sequences - start), distance, vocab_size, data)
        correct += int((model(tokens).argmax(-1) == answers).sum())
    return correct / sequences


def build(cell: str, seed: int, settings: LongRangeSettings) -> FirstTokenClassifier:
    """The classifier of ``cell`` with its initial weights drawn from ``seed`` (the global
    RNG is left as it was)."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        s = settings
        return FirstTokenClassifier(cell, s.vocab_size, s.embedding_dim, s.hidden_size, s.forget_bias, s.recurrent_init)


def run(cell: str, distance: int, seed: int, settings: LongRangeSettings) -> LongRangeResult:
    """Build, train and evaluate one classifier: ``cell`` at ``distance`` from ``seed``
    (weights and training data; the held-out sequences are the same for every run)."""
    model = build(cell, seed, settings)
    start = time.perf_counter()
    steps, batch, lr, clip = settings.steps, settings.batch_size, settings.learning_rate, settings.clip_grad_norm
    losses = train(model, distance, steps, batch, lr, clip, generator(seed))
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, distance, settings.eval_sequences, generator(seed, held_out=True))
    tail = losses[-max(1, len(losses) // 10) :]
    log.info("%s L=%d seed=%d: accuracy %.3f after %.0f s", cell, distance, seed, accuracy, seconds)
    return LongRangeResult(
        cell=cell,
        distance=distance,
        seed=seed,
        accuracy=accuracy,
        chance=1 / settings.vocab_size,
        final_loss=sum(tail) / len(tail),
        seconds=seconds,
        parameters=sum(p.numel() for p in model.parameters()),
        settings=settings.to_dict(),
    )
