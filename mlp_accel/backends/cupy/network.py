"""The CuPy backend's fused whole-network object: forward + loss + backward of a small
network in one kernel (sources in :mod:`._kernels.network`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...ops.layout import param_layout
from ..base import NetworkSpec
from . import kernels as _kernels
from .launch import Launcher, c_contiguous

__all__ = ["CupyFusedNetwork"]

Array = Any


class CupyFusedNetwork:
    """Forward + loss + backward of a small network in one kernel.

    One thread per sample keeps activations and gradient sums in registers; each block
    writes partial sums, and one more launch adds them into a flat ``[W1, b1, ..., loss]``
    vector whose views are the gradients.

    Parameters
    ----------
    spec : NetworkSpec
        The network; :func:`~._kernels.fused_supported` must accept it.
    launch : Launcher
        The backend's kernel cache and grid sizes.
    activate : callable
        Makes the backend's GPU (and TF32 setting) current; called before every launch.
    """

    def __init__(self, spec: NetworkSpec, launch: Launcher, activate: Callable[[], None]) -> None:
        self._launch = launch
        self._activate = activate
        self.spec = spec
        widths = tuple(int(w) for w in spec.widths)
        activations = tuple(spec.activations)
        dtype = spec.dtype
        self._dtype = np.dtype(dtype)
        self._real = self._dtype.type
        self._n_out = widths[-1]
        slots = param_layout(widths)
        self._layout = [(slot.offset, slot.end, slot.shape) for slot in slots]
        self._n_params = slots[-1].end
        self._train = launch.kernel(
            ("fused_train", widths, activations, spec.loss, dtype),
            lambda: _kernels.fused_train_source(widths, activations, spec.loss, dtype),
        )
        self._forward = launch.kernel(
            ("fused_forward", widths, activations, dtype),
            lambda: _kernels.fused_forward_source(widths, activations, dtype),
        )

    def _c_array(self, x: Array) -> Array:
        """``x`` as a C-contiguous array of the network's dtype (itself when it already is)."""
        if x.dtype == self._dtype and c_contiguous(x):
            return x
        return self._launch.cp.ascontiguousarray(x, dtype=self._dtype)

    def _inputs(self, params: list[Array], X: Array) -> tuple[Array, list[Array]]:
        return self._c_array(X), [self._c_array(p) for p in params]

    def loss_and_gradients(
        self, params: list[Array], X: Array, y: Array, denom: float
    ) -> tuple[Array, list[Array]]:
        """Loss summed over the batch and gradients of ``loss_sum / denom``."""
        self._activate()
        launch = self._launch
        cp = launch.cp
        X, params = self._inputs(params, X)
        y = self._c_array(y)
        n = int(X.shape[0])
        n_acc = self._n_params + 1
        # Four blocks per SM: threads take several samples each when the batch is large,
        # which amortizes the block's final reduction of its n_acc sums.
        blocks = launch.blocks(n, per_sm=4)
        out = cp.empty(n_acc, dtype=self._dtype)
        dst = out if blocks == 1 else cp.empty(n_acc * blocks, dtype=self._dtype)
        self._train(
            (blocks,),
            (_kernels.BLOCK,),
            (X, y, *params, dst, np.int64(n), self._real(1.0 / denom)),
        )
        if blocks > 1:
            launch.sum_segments(dst, out, n_acc, blocks)
        grads = [
            out[start:stop] if len(shape) == 1 else out[start:stop].reshape(shape)
            for start, stop, shape in self._layout
        ]
        loss_sum = out[self._n_params :].reshape(())  # a 0-d device array, not a scalar
        return loss_sum, grads

    def forward(self, params: list[Array], X: Array) -> Array:
        """The network's outputs after the output activation."""
        self._activate()
        launch = self._launch
        X, params = self._inputs(params, X)
        n = int(X.shape[0])
        out = launch.cp.empty((n, self._n_out), dtype=self._dtype)
        self._forward((launch.blocks(n),), (_kernels.BLOCK,), (X, *params, out, np.int64(n)))
        return out
