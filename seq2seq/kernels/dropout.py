"""Dropout (Srivastava et al. 2014) with a cheaper mask: :class:`FastDropout` stands in for
``torch.nn.Dropout``.

Why: torch's CPU dropout draws one Bernoulli sample per element, a visible part of a bf16
training step (``scripts/bench/benchmark.py``). Here one 64-bit random integer gives the
Bernoulli draws of four elements (16 bits each). The keep probability is 1 - p rounded to a
multiple of 1/65536, and the kept values are scaled by its exact inverse, so the
expectation is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.kernels.kernel import Kernel


def fast_dropout_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A dropout mask of ``shape``: 0 with probability p (to 1/65536), else 1 / (1 - p)."""
    numel = 1
    for size in shape:
        numel *= size
    dropped = round(p * 65536)  # of the 65,536 values of a 16-bit draw, this many drop
    keep = 1.0 - dropped / 65536
    draws = torch.randint(-(2**63), 2**63 - 1, ((numel + 3) // 4,), dtype=torch.int64, device=device)
    bits = draws.view(torch.int16)[:numel].view(shape)
    return (bits >= dropped - 32768).to(dtype).mul_(1.0 / keep)


class FastDropout(Kernel, nn.Dropout):
    """torch.nn.Dropout with :func:`fast_dropout_mask` (same arguments and behaviour)."""

    plain = nn.Dropout

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        mask = fast_dropout_mask(tuple(x.shape), self.p, x.dtype, x.device)
        return x.mul_(mask) if self.inplace else x * mask
