"""The NumPy backend: the generic hooks on ``array_api_compat.numpy``, with in-place NumPy
versions of the hottest ones (CONVENTIONS 7: in-place work is opt-in and lives in backends).

The overrides compute the same expressions as the generic hooks; they only avoid temporaries:
the bias is added into the product, the activation derivative is multiplied into the incoming
gradient (a fresh array this backend owns), and optimizer state and parameters are updated in
place.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ..ops.table import Activation
from .base import Backend

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """Runs the array-API code on NumPy, on the host CPU."""

    name = "numpy"
    xp = xp_numpy
    device = "cpu"
    chunked = True

    def training_scope(self) -> Any:
        """BLAS held to one thread for a whole fit (see ``_threads.single_threaded_blas``)."""
        from ._threads import single_threaded_blas

        return single_threaded_blas()

    def asarray(self, x: Any, dtype: str) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def take_rows(self, x: np.ndarray, index: np.ndarray) -> np.ndarray:
        return x[index]

    def describe(self) -> dict[str, str]:
        from threadpoolctl import threadpool_info

        blas = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        return {"device": "cpu", "numpy": np.__version__, "blas": "; ".join(blas) or "unknown"}

    # -- hot hooks, in place -------------------------------------------------------------------
    def dense_forward(
        self, a_prev: np.ndarray, W: np.ndarray, b: np.ndarray, activation: Activation
    ) -> tuple[np.ndarray, np.ndarray]:
        z = a_prev @ W
        z += b
        if activation.name == "relu":
            return z, np.maximum(z, 0.0)
        return z, activation.forward(z, xp=np)

    def dense_backward(
        self,
        grad: np.ndarray,
        z: np.ndarray,
        a: np.ndarray,
        a_prev: np.ndarray,
        W: np.ndarray,
        activation: Activation,
        need_input_grad: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # grad is always a fresh array made by the layer above (or the loss): ours to reuse.
        if activation.name == "relu":
            np.multiply(grad, z > 0, out=grad)
            dz = grad
        elif activation.derivative is not None:
            grad *= activation.derivative(z, a, np)
            dz = grad
        else:
            dz = activation.vjp(grad, z, a, np)
        dW = a_prev.T @ dz
        db = dz.sum(axis=0)
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def sgd_update(self, params, grads, velocity, lr, momentum, nesterov):
        if velocity is None:
            for p, g in zip(params, grads):
                p -= lr * g
            return params, None
        for p, g, v in zip(params, grads, velocity):
            v *= momentum
            v += g
            if nesterov:
                p -= lr * (g + momentum * v)
            else:
                p -= lr * v
        return params, velocity

    def adam_update(self, params, grads, m, v, step, lr, beta1, beta2, eps):
        c1 = 1.0 - beta1**step
        c2 = 1.0 - beta2**step
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= beta1
            mi += (1.0 - beta1) * g
            vi *= beta2
            vi += (1.0 - beta2) * (g * g)
            denom = np.sqrt(vi / c2)
            denom += eps
            p -= lr * (mi / c1) / denom
        return params, m, v

    def optimizer_update(self, row, params, grads, state, scalars, tensor_scalars):
        first = [params[0], grads[0], *(s[0] for s in state)] if params else []
        if not first or any(
            not isinstance(a, np.ndarray) or a.dtype != first[0].dtype for a in first
        ):
            return super().optimizer_update(row, params, grads, state, scalars, tensor_scalars)
        from .numpy_optim import inplace_update

        inplace_update(row, params, grads, state, scalars, tensor_scalars)
        return params, state
