"""The two dtypes of the kernels (:mod:`~seq2seq.kernels.gru_loop`,
:mod:`~seq2seq.kernels.input_feeding`, :mod:`~seq2seq.kernels.loss`): matrix products in
autocast's dtype, elementwise work (states, gates, softmax) in float32 for the half types;
and :class:`CastCache`, weights cast once for search."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import torch
from torch import Tensor

from seq2seq.kernels.matmul import pack as pack_weight


def product_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """Autocast's dtype where autocast is on for ``device_type``, else ``default``."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else default


def elementwise_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half types, else ``dtype`` itself (float64 stays float64 for tests)."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


class CastCache:
    """Weights cast to a dtype once and reused while none of the parameters they come from
    changes. Search runs the same weights at every step, where autocast would cast them
    again each time, which for a large output projection is a good part of its product's
    time (``scripts/bench/benchmark.py`` measures decoding).

    The owner calls :meth:`clear` when a search begins (``encode``), since not every in-place
    update moves a parameter's version counter (torch's fused Adam does not); within a
    search, the key (each parameter's storage and version) still catches any in-place change
    made through the parameter itself.

    ``frozen``: the weights never change (a model loaded to translate,
    :func:`~seq2seq.kernels.accelerate`'s ``frozen``). Then :meth:`clear` keeps what was made,
    and the weight matrices named by :meth:`get`'s ``pack`` are also packed for oneDNN
    (:func:`~seq2seq.kernels.matmul.pack`), which costs a pass over them once per model rather
    than once per product."""

    def __init__(self, frozen: bool = False) -> None:
        self.frozen = frozen
        self._key: tuple[object, ...] | None = None
        self._value: tuple[Tensor, ...] = ()

    def clear(self) -> None:
        if not self.frozen:
            self._key, self._value = None, ()

    def get(
        self,
        dtype: torch.dtype,
        params: Iterable[Tensor],
        make: Callable[[], Sequence[Tensor]],
        pack: Collection[int] = (),
    ) -> tuple[Tensor, ...]:
        """``make()`` (tensors computed from ``params``) in ``dtype``, contiguous; when frozen,
        those at the indices ``pack`` (weight matrices for :func:`~seq2seq.kernels.matmul.linear`)
        packed."""
        key = (dtype, *((p.data_ptr(), p._version) for p in params))
        if key != self._key:
            with torch.no_grad():
                made = [t.to(dtype).contiguous() for t in make()]
                if self.frozen:
                    made = [pack_weight(t) if i in pack else t for i, t in enumerate(made)]
            self._value, self._key = tuple(made), key
        return self._value
