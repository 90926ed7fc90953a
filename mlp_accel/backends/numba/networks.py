"""The whole-network kernels of a narrow network on the numba backend, as the model sees them.

:class:`SmallNetwork` wraps the kernel module specialized on one shape (:mod:`.fused`);
:class:`GenericNetwork` the generic one of :mod:`.generic`, which takes the widths as data.
Both run one chunk of rows per call on the calling thread; the model splits a batch into
fixed chunks and runs them on the package's worker threads (``backends/_chunks.py``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ...ops.layout import param_layout
from ..base import NetworkSpec

__all__ = ["SmallNetwork", "GenericNetwork"]


class SmallNetwork:
    """The fused whole-network kernels specialized on one narrow :class:`NetworkSpec`."""

    #: The kernel tier, as ``model.code_path`` reports it.
    tier = "specialized"

    def __init__(self, spec: NetworkSpec, module: Any) -> None:
        self.spec = spec
        self._module = module
        self._dtype = np.dtype(spec.dtype)
        self._block = int(module.BLOCK)
        self._layout = [(s.offset, s.end, s.shape) for s in param_layout(spec.widths)]

    def loss_and_gradients(
        self, params: list[Any], X: Any, y: Any, denom: float
    ) -> tuple[Any, list[Any]]:
        """Loss summed over the rows and the gradients of ``loss_sum / denom``."""
        # Numba checks the argument types (and compiles for any new ones) as it dispatches.
        loss, *grads = self._module.train(X, y, *params, 1.0 / denom, self._block)
        return self._dtype.type(loss), grads

    def forward(self, params: list[Any], X: Any) -> Any:
        """Outputs after the output activation."""
        return self._module.forward(X, *params, self._block)

    def compile(self) -> None:
        """Compile (or load from the disk cache) the train and forward kernels."""
        d = self.spec.widths
        rng = np.random.default_rng(0)
        params = [np.asarray(rng.standard_normal(s), self._dtype) for _, _, s in self._layout]
        X = np.zeros((3, d[0]), self._dtype)
        y = np.zeros((3, d[-1]), self._dtype)
        self._module.train(X, y, *params, 1.0, self._block)
        self._module.forward(X, *params, self._block)


class GenericNetwork(SmallNetwork):
    """The generic fused kernels run for one narrow :class:`NetworkSpec`.

    Parameters are packed into one flat vector per call (a copy of at most a few thousand
    numbers, microseconds) and the gradients come back as views of one flat vector in the
    parameters' shapes.
    """

    tier = "generic"

    def __init__(self, spec: NetworkSpec, module: ModuleType) -> None:
        from .generic import shape_tables

        super().__init__(spec, module)
        self._tables = shape_tables(spec, module.HIDDEN)

    def _pack(self, params: list[Any]) -> Any:
        return np.concatenate([p.reshape(-1) for p in params])

    def loss_and_gradients(
        self, params: list[Any], X: Any, y: Any, denom: float
    ) -> tuple[Any, list[Any]]:
        """Loss summed over the batch and the gradients of ``loss_sum / denom``."""
        # contiguous inputs keep the one compiled signature (a no-op for the model's arrays)
        X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
        loss, flat = self._module.train(X, y, self._pack(params), *self._tables, 1.0 / denom)
        grads = [flat[lo:hi].reshape(shape) for lo, hi, shape in self._layout]
        return self._dtype.type(loss), grads

    def forward(self, params: list[Any], X: Any) -> Any:
        """Outputs after the output activation."""
        X = np.ascontiguousarray(X)
        return self._module.forward(X, self._pack(params), *self._tables)

    def compile(self) -> None:
        """Compile (or load from the disk cache) the train and forward kernels."""
        from .generic import generic_key, sample_arguments

        X, Y, P, tables = sample_arguments(generic_key(self.spec))
        self._module.train(X, Y, P, *tables, 1.0)
        self._module.forward(X, P, *tables)
