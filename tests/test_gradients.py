"""Analytic gradients against central finite differences (float64), on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma

from .helpers import finite_difference_grads, make_data

# Every activation on a hidden layer, and every output activation with every loss it accepts.
PAIRS = [
    (["relu", "sigmoid"], "binary_cross_entropy"),
    (["tanh", "softmax"], "cross_entropy"),
    (["leaky_relu", "identity"], "squared_error"),
    (["sigmoid", "sigmoid"], "squared_error"),
    (["identity", "softmax"], "squared_error"),
    (["relu", "tanh"], "squared_error"),
    (["tanh", "relu"], "squared_error"),
    (["sigmoid", "leaky_relu"], "squared_error"),
]


@pytest.mark.parametrize(("activations", "loss"), PAIRS, ids=lambda v: str(v))
def test_gradients_match_finite_differences(backend_name, activations, loss, rng):
    widths = [3, 5, 3]
    X, y = make_data(rng, 7, widths, loss)
    model = ma.MLP(widths, activations, loss, backend=backend_name, dtype="float64", seed=3)
    _, analytic = model.gradients(X, y)
    numeric = finite_difference_grads(model, X, y)
    for a, n in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n_samples", [1, 2])
def test_deep_network_and_tiny_batches(backend_name, n_samples, rng):
    widths = [2, 4, 4, 3, 3, 2]
    activations = ["tanh", "sigmoid", "leaky_relu", "tanh", "softmax"]
    X, y = make_data(rng, n_samples, widths, "cross_entropy")
    model = ma.MLP(
        widths, activations, "cross_entropy", backend=backend_name, dtype="float64", seed=5
    )
    _, analytic = model.gradients(X, y)
    numeric = finite_difference_grads(model, X, y)
    for a, n in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("widths", "activations", "loss"),
    [
        ([2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"),
        ([6, 16, 4], ["tanh", "softmax"], "cross_entropy"),
        ([5, 8, 2], ["sigmoid", "identity"], "squared_error"),
    ],
)
def test_float32_gradients_follow_float64(backend_name, widths, activations, loss, rng):
    X, y = make_data(rng, 64, widths, loss)
    m64 = ma.MLP(widths, activations, loss, backend=backend_name, dtype="float64", seed=11)
    m32 = ma.MLP(widths, activations, loss, backend=backend_name, dtype="float32", seed=11)
    m32.set_weights(m64.get_weights())
    loss64, g64 = m64.gradients(X, y)
    loss32, g32 = m32.gradients(X, y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for a, b in zip(g32, g64, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * np.abs(b).max())


def test_fused_output_gradient_equals_chain_rule(backend_name, rng):
    """The matched-pair shortcut yhat - y equals dL/dyhat pushed through f'(z)."""
    from mlp_accel.activations import get_activation
    from mlp_accel.backends import get_backend
    from mlp_accel.losses import LOSSES

    backend = get_backend(backend_name)
    n, k = 9, 3
    for loss in LOSSES.values():
        act = get_activation(loss.fused_activation)
        z = rng.normal(size=(n, k))
        if loss.name == "cross_entropy":
            y = np.eye(k)[rng.integers(0, k, n)]
        elif loss.name == "binary_cross_entropy":
            y = rng.integers(0, 2, size=(n, k)).astype(float)
        else:
            y = rng.normal(size=(n, k))
        zd = backend.asarray(z, "float64")
        yd = backend.asarray(y, "float64")
        yhat = act.forward(zd, xp=backend.xp)
        _, fused = backend.output_loss_gradient(zd, yhat, yd, loss, act, float(n))
        chain = act.vjp(loss.output_grad(yhat, yd, xp=backend.xp) / n, zd, yhat, backend.xp)
        np.testing.assert_allclose(
            backend.to_numpy(fused), backend.to_numpy(chain), rtol=1e-10, atol=1e-12
        )


def test_gradient_is_independent_of_batch_size(backend_name, rng):
    """The loss is a mean: doubling the batch with copies leaves loss and gradients unchanged."""
    widths = [2, 4, 3, 1]
    X, y = make_data(rng, 10, widths, "binary_cross_entropy")
    model = ma.MLP(
        widths, ["relu", "relu", "sigmoid"], backend=backend_name, dtype="float64", seed=0
    )
    l1, g1 = model.gradients(X, y)
    l2, g2 = model.gradients(np.vstack([X, X]), np.vstack([y, y]))
    assert l1 == pytest.approx(l2, rel=1e-12)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
