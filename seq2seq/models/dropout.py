"""Dropout masks of the recurrent layers (Srivastava et al. 2014; Gal & Ghahramani 2016).

Elementwise dropout on activations is torch's ``nn.Dropout``; the recurrent stacks also need
masks they hold for a whole sequence (variational dropout), drawn here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dropout_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A mask of ``shape`` with ``like``'s dtype and device: 0 with probability p, else
    1 / (1 - p), so that ``x * mask`` keeps the expectation of x."""
    keep = 1.0 - p
    return torch.bernoulli(like.new_full(shape, keep)) / keep
