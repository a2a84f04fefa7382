"""The two dtypes of the hand-written loops (:mod:`seq2seq.models.gru_loop`,
:mod:`seq2seq.models.input_feeding`, :mod:`seq2seq.train.loss`): matrix products in
autocast's dtype, elementwise work (states, gates, softmax) in float32 for the half types."""

from __future__ import annotations

import torch


def product_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """Autocast's dtype where autocast is on for ``device_type``, else ``default``."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else default


def elementwise_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half types, else ``dtype`` itself (float64 stays float64 for tests)."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
