"""The base of every kernel class (see :mod:`seq2seq.kernels`)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn


class Kernel:
    """Mixed into a subclass of the plain module ``plain`` that the kernel stands in for:
    ``class FastX(Kernel, X)`` with ``plain = X``. :func:`~seq2seq.kernels.accelerate` gives a
    module the kernel where :meth:`supports` holds, then calls :meth:`setup`."""

    plain: ClassVar[type[nn.Module]]

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        """Whether ``module`` (plain, or this kernel already) can run as this kernel."""
        return type(module) in (cls.plain, cls)

    def setup(self, compile: str, frozen: bool) -> None:
        """Make what the kernel keeps beside the plain module's parameters (caches, step
        functions); ``compile`` is the ``torch.compile`` mode of a step loop; ``frozen``: the
        weights will not change (see :func:`~seq2seq.kernels.accelerate`)."""
