"""The NumPy backend: the generic hooks on ``array_api_compat.numpy``, with in-place NumPy
versions of the hottest ones (CONVENTIONS 7: in-place work is opt-in and lives in backends).

The overrides compute the same expressions as the generic hooks; they only avoid temporaries:
the bias is added into the product, the activation derivative is multiplied into the incoming
gradient (a fresh array this backend owns), and optimizer state and parameters are updated in
place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ..ops.table import Activation
from .base import Backend

__all__ = ["NumpyBackend"]


def _numpy_layer(activation: Activation) -> Callable[..., np.ndarray]:
    """:meth:`NumpyBackend.dense_forward` of ``activation`` without keeping ``z``."""
    if activation.name == "relu":

        def relu(a_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
            z = a_prev @ W
            z += b
            return np.maximum(z, 0.0, out=z)

        return relu
    if activation.name == "softmax":

        def softmax(a_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
            # ops.table's softmax, each step in place: the same elementwise operations.
            z = a_prev @ W
            z += b
            # np.max and np.sum are these reductions behind microseconds of Python.
            z -= np.maximum.reduce(z, axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= np.add.reduce(z, axis=1, keepdims=True)
            return z

        return softmax
    forward = activation.forward

    def layer(a_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = a_prev @ W
        z += b
        return forward(z, xp=np)

    return layer


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
        from ._threads import threadpoolctl

        blas = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpoolctl().threadpool_info()
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

    def forward_layer(self, activation: Activation, dtype: str) -> Callable[..., np.ndarray] | None:
        """``layer(a_prev, W, b) -> a``: :meth:`dense_forward`'s activation for inference.

        The same operations in the same order as :meth:`dense_forward`, so the same bits,
        without keeping ``z``: the activation is computed into the fresh product where it
        can be. For C-contiguous arrays of ``dtype`` (the model checks its inputs once per
        call). ``None`` where a subclass replaced :meth:`dense_forward`, whose arithmetic
        this would not reproduce.
        """
        if type(self).dense_forward is not NumpyBackend.dense_forward:
            return None
        return _numpy_layer(activation)

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
