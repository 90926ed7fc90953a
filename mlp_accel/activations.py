"""Activation functions as a table of (f, f') pairs written against an array namespace.

The functions are views of the rows of :mod:`mlp_accel.ops.table`, where each activation is
written once as an expression in ``z`` (with its derivative, in ``z`` or in ``a = f(z)``);
the Numba and CUDA kernels are rendered from the same rows. Every function takes the array
namespace ``xp``, so the same code runs on NumPy, CuPy and any array-API library.
Derivatives receive both ``z`` and ``a`` so each can use whichever is cheaper (sigmoid and
tanh reuse ``a``).

Built-ins: identity, relu, leaky_relu, sigmoid, tanh, softmax (output only), gelu (erf
form), silu, elu (alpha 1), softplus and exp (the Poisson loss's output). More can be added
with :func:`register_activation`.
"""

from __future__ import annotations

from .ops.table import (
    ACTIVATION_ROWS,
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    Activation,
    get_activation,
    register_activation,
)

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "ACTIVATION_ROWS",
    "get_activation",
    "register_activation",
    "LEAKY_RELU_SLOPE",
]
