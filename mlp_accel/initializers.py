"""Initial weights, drawn on the host from one NumPy Generator.

Drawing on the host and copying to the device gives the same initial model on every backend
for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._names import canonical_name

__all__ = ["INITIALIZERS", "initial_weights"]

#: Initialization schemes: "he" (normal, std sqrt(2 / fan_in), zero biases), "glorot"
#: (uniform +-sqrt(6 / (fan_in + fan_out)), zero biases) and "normal" (the tutorial's
#: N(0, 0.1) for weights and biases alike).
INITIALIZERS = ("he", "glorot", "normal")


def initial_weights(widths: Sequence[int], init: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Return ``[W1, b1, W2, b2, ...]`` in float64 for the layer ``widths``.

    Raises
    ------
    TypeError
        ``init`` is not a string.
    ValueError
        If ``init`` is not one of :data:`INITIALIZERS` (the message lists them).
    """
    init = canonical_name(INITIALIZERS, init, "init")
    weights: list[np.ndarray] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        if init == "he":
            W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            b = np.zeros(fan_out)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            b = np.zeros(fan_out)
        else:
            W = rng.normal(0.0, 0.1, size=(fan_in, fan_out))
            b = rng.normal(0.0, 0.1, size=fan_out)
        weights += [W, b]
    return weights
