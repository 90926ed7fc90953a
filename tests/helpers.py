"""Small shared helpers for the tests (data makers, finite differences)."""

from __future__ import annotations

import numpy as np

import mlp_accel as ma


def make_data(
    rng: np.random.Generator, n: int, widths: list[int], loss: str
) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and targets that fit ``loss`` for a network of ``widths``."""
    X = rng.normal(size=(n, widths[0]))
    k = widths[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, k, size=n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, k)).astype(float)
    else:
        y = rng.normal(size=(n, k))
    return X, y


def finite_difference_grads(
    model: ma.MLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-6
) -> list[np.ndarray]:
    """Central finite differences of the mean loss with respect to every parameter."""
    weights = model.get_weights()
    grads = []
    for i, w in enumerate(weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus = [x.copy() for x in weights]
            minus = [x.copy() for x in weights]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            model.set_weights(plus)
            lp = model.evaluate(X, y)
            model.set_weights(minus)
            lm = model.evaluate(X, y)
            g[idx] = (lp - lm) / (2 * eps)
        grads.append(g)
    model.set_weights(weights)
    return grads
