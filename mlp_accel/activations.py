"""Activation functions as a table of (f, f') pairs written against an array namespace.

Every function takes the array namespace ``xp`` as a keyword, so the same code runs on
NumPy, CuPy and any array-API library. Derivatives receive both the pre-activation ``z``
and the activation ``a`` so each can use whichever is cheaper (sigmoid and tanh reuse ``a``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._names import lookup

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "LEAKY_RELU_SLOPE"]

Array = Any

#: Negative-side slope of ``leaky_relu``.
LEAKY_RELU_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An activation function and its derivative.

    Parameters
    ----------
    name : str
        Registry name.
    forward : callable
        ``forward(z, xp) -> a``.
    derivative : callable or None
        ``derivative(z, a, xp) -> f'(z)`` elementwise; ``None`` for activations whose
        Jacobian is not diagonal (softmax), which must override :meth:`vjp` instead.
    output_only : bool
        True where the activation only makes sense on the output layer.
    """

    name: str
    forward: Callable[..., Array]
    derivative: Callable[..., Array] | None
    output_only: bool = False
    vjp_fn: Callable[..., Array] | None = None

    def vjp(self, grad: Array, z: Array, a: Array, xp: Any) -> Array:
        """Return ``dL/dz`` given ``dL/da`` (a vector-Jacobian product)."""
        if self.vjp_fn is not None:
            return self.vjp_fn(grad, z, a, xp)
        return grad * self.derivative(z, a, xp)


def _identity(z, xp):
    return z


def _identity_vjp(grad, z, a, xp):
    return grad


def _relu(z, xp):
    return xp.maximum(z, 0.0)


def _relu_derivative(z, a, xp):
    return xp.astype(z > 0, z.dtype)


def _leaky_relu(z, xp):
    return xp.where(z > 0, z, z * LEAKY_RELU_SLOPE)


def _leaky_relu_derivative(z, a, xp):
    ones = xp.ones_like(z)
    return xp.where(z > 0, ones, ones * LEAKY_RELU_SLOPE)


def _sigmoid(z, xp):
    # 0.5 * (1 + tanh(z / 2)) equals 1 / (1 + exp(-z)) but never overflows, in either dtype,
    # so it needs none of the tutorial's clipping.
    return 0.5 * (xp.tanh(0.5 * z) + 1.0)


def _sigmoid_derivative(z, a, xp):
    # The true derivative s(1 - s); the tutorial's dsigmoid returns twice this.
    return a * (1.0 - a)


def _tanh(z, xp):
    return xp.tanh(z)


def _tanh_derivative(z, a, xp):
    return 1.0 - a * a


def _softmax(z, xp):
    shifted = z - xp.max(z, axis=1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=1, keepdims=True)


def _softmax_vjp(grad, z, a, xp):
    # J^T g for softmax, row by row: a * (g - <g, a>).
    return a * (grad - xp.sum(grad * a, axis=1, keepdims=True))


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", _identity, None, vjp_fn=_identity_vjp),
    "relu": Activation("relu", _relu, _relu_derivative),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_derivative),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_derivative),
    "tanh": Activation("tanh", _tanh, _tanh_derivative),
    "softmax": Activation("softmax", _softmax, None, output_only=True, vjp_fn=_softmax_vjp),
}


def get_activation(name: str | Activation) -> Activation:
    """Look up an activation by name.

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    if isinstance(name, Activation):
        return name
    return lookup(ACTIVATIONS, name, "activation")
