"""The forward pass a prediction runs (:meth:`MLP.forward_device`), lean on the CPU backends.

A training step keeps every layer's ``z`` and ``a`` for the backward pass and goes through
the backend's hooks. A prediction needs neither: on the numpy and numba backends it runs a
plan built once per model (:class:`_Plan`), one function per layer from the backend's
:meth:`~mlp_accel.backends.numpy_backend.NumpyBackend.forward_layer`, each computing its
activation into the product it just made. The arithmetic is the hooks', operation for
operation, so the bits are the same; only the per-call Python work (hook dispatch, kernel
look-ups, input checks of every layer, a list of the layers' outputs) is gone, which is most
of the time of a small batch.

Rows go through the fixed chunks of the training path (``backends/_chunks.py``): one chunk
with BLAS held to one thread, several on the package's worker threads, each writing its rows
of one output array. So a prediction's bits depend on the model and the rows only, never on
the thread count. What the plan does not cover (a fused whole-network kernel, a GPU, a
backend whose ``dense_forward`` is its own, inputs that are not C-contiguous arrays of the
model's dtype) runs the hooks as before.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backends import _layer_loop as layer_loop
from .backends import _threads
from .backends._chunks import chunk_plan, over_chunks, run_chunks

__all__ = ["forward_rows"]

Array = Any
Layer = Callable[[Array, Array, Array], Array]


class _Plan:
    """The layer functions of one model on one backend, and the parameters last checked."""

    def __init__(
        self, backend: Any, layers: list[Layer] | None, widths: tuple[int, ...], dtype: str
    ):
        self.backend = backend
        self.layers = layers
        self.widths = widths
        self.dtype = np.dtype(dtype)
        self._checked: tuple[Array, ...] = ()

    def native(self, params: Sequence[Array]) -> bool:
        """Whether every parameter is a C-contiguous NumPy array of the model's dtype.

        Checked again only when a parameter array is replaced (``set_weights``, a move to
        another backend); an optimizer updates the same arrays in place. The arrays last
        checked are held until then.
        """
        seen = self._checked
        if len(seen) == len(params) and all(map(operator.is_, params, seen)):
            return True
        ok = all(_native(p, self.dtype) for p in params)
        self._checked = tuple(params) if ok else ()
        return ok

    def rows(self, params: Sequence[Array], a: Array) -> Array:
        """The outputs of rows ``a``, in the calling thread."""
        for k, layer in enumerate(self.layers or ()):
            a = layer(a, params[2 * k], params[2 * k + 1])
        return a

    def run(self, params: Sequence[Array], X: Array) -> Array:
        """The outputs of ``X``, over the fixed chunks of its rows."""
        n = X.shape[0]
        chunks = chunk_plan(n, self.widths)
        if len(chunks) == 1:
            with _threads.single_threaded_blas():
                return self.rows(params, X)
        out = np.empty((n, self.widths[-1]), self.dtype)

        def chunk(i: int) -> None:
            lo, hi = chunks[i]
            out[lo:hi] = self.rows(params, X[lo:hi])

        run_chunks(chunk, len(chunks), blas=True)
        return out


def _native(x: Any, dtype: np.dtype) -> bool:
    return type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous


_plans: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()


def _plan(model: Any) -> _Plan:
    """The model's plan for its current backend (built on first use, and after a move)."""
    plan = _plans.get(model)
    if plan is None or plan.backend is not model.backend:
        backend = model.backend
        made = [backend.forward_layer(act, model.dtype) for act in model._activation_fns]
        layers = None if any(f is None for f in made) else made
        plan = _Plan(backend, layers, tuple(model.layers), model.dtype)
        _plans[model] = plan
    return plan


def forward_rows(model: Any, X: Array) -> Array:
    """Outputs (after the output activation) of device inputs ``X``, without validation."""
    fused = model._fused_network()
    if fused is None and X.shape[0]:
        plan = _plan(model)
        params = model._params
        if plan.layers is not None and _native(X, plan.dtype) and plan.native(params):
            return plan.run(params, X)
    return _hooked(model, X, fused)


def _hooked(model: Any, X: Array, fused: Any) -> Array:
    """The forward pass through the backend's hooks (or its fused kernel), chunk by chunk."""
    n = X.shape[0]
    params, backend = model._params, model.backend

    def rows(lo: int, hi: int) -> Array:
        part = X if hi - lo == n else X[lo:hi, :]
        if fused is not None:
            return fused.forward(params, part)
        return layer_loop.forward_trace(backend, params, model._activation_fns, part)[-1][1]

    parts = over_chunks(backend, tuple(model.layers), n, rows, blas=fused is None)
    return parts[0] if len(parts) == 1 else backend.xp.concat(parts, axis=0)
