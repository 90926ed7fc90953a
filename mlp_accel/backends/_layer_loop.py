"""The generic path of a whole network: the layer loop over a backend's hooks.

:class:`~mlp_accel.model.MLP` runs it for every network without a fused kernel, and the
Numba backend's staged network runs it while a fused kernel compiles: one loop, so that the
equations (``docs/design.md``) are written once above the hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ops.table import Activation, Loss
from .base import IDENTITY

__all__ = ["forward_trace", "backward", "loss_and_gradients"]

Array = Any


def forward_trace(
    backend: Any, params: Sequence[Array], activations: Sequence[Activation], X: Array
) -> list[tuple[Array, Array]]:
    """``[(z_1, a_1), ..., (z_L, a_L)]``: every layer's pre-activation and activation."""
    trace = []
    a = X
    for k, act in enumerate(activations):
        z, a = backend.dense_forward(a, params[2 * k], params[2 * k + 1], act)
        trace.append((z, a))
    return trace


def backward(
    backend: Any,
    params: Sequence[Array],
    activations: Sequence[Activation],
    X: Array,
    trace: list[tuple[Array, Array]],
    grad: Array,
) -> list[Array]:
    """Gradients ``[dW1, db1, ...]`` from the output layer's ``dL/dz`` (``grad``)."""
    grads: list[Array] = [None] * len(params)
    # The output layer's dL/dz is already known, so it goes through the identity.
    act = IDENTITY
    for k in range(len(activations) - 1, -1, -1):
        z, a = trace[k]
        a_prev = X if k == 0 else trace[k - 1][1]
        dW, db, grad = backend.dense_backward(grad, z, a, a_prev, params[2 * k], act, k > 0)
        grads[2 * k], grads[2 * k + 1] = dW, db
        act = activations[k - 1] if k > 0 else act
    return grads


def loss_and_gradients(
    backend: Any,
    params: Sequence[Array],
    activations: Sequence[Activation],
    loss: Loss,
    X: Array,
    y: Array,
    denom: Any,
) -> tuple[Array, list[Array]]:
    """The batch's summed loss and the gradients of ``loss_sum / denom`` (no sample weights)."""
    trace = forward_trace(backend, params, activations, X)
    z_out, yhat = trace[-1]
    loss_sum, grad = backend.output_loss_gradient(z_out, yhat, y, loss, activations[-1], denom)
    return loss_sum, backward(backend, params, activations, X, trace, grad)
