"""One test for each defect of the tutorial's code (see DESIGN.md), showing ours is right."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.activations import get_activation
from mlp_accel.losses import get_loss


def test_sigmoid_derivative_is_s_times_one_minus_s():
    """The tutorial's dsigmoid returns 2 s (1 - s); the true derivative has no factor 2."""
    xp = ma.get_backend("numpy").xp
    sig = get_activation("sigmoid")
    z = np.linspace(-6, 6, 101)
    a = sig.forward(z, xp=xp)
    h = 1e-6
    numeric = (sig.forward(z + h, xp=xp) - sig.forward(z - h, xp=xp)) / (2 * h)
    np.testing.assert_allclose(sig.derivative(z, a, xp), numeric, rtol=1e-6, atol=1e-10)
    assert sig.derivative(np.array([0.0]), np.array([0.5]), xp)[0] == pytest.approx(0.25)


def test_effective_learning_rate_does_not_depend_on_batch_size(backend_name):
    """The tutorial sums dW over the batch but averages db and divides the loss by the number
    of outputs: one SGD step then moves W by an amount that grows with n. Ours is a mean."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    steps = []
    for reps in (1, 8):
        model = ma.MLP([2, 4, 3, 1], backend=backend_name, dtype="float64", seed=1)
        w0 = model.get_weights()
        ma.fit(
            model,
            np.tile(X, (reps, 1)),
            np.tile(y, reps),
            epochs=1,
            optimizer=ma.optim.SGD(lr=0.1),
            shuffle=False,
        )
        steps.append([w1 - w for w1, w in zip(model.get_weights(), w0, strict=True)])
    for a, b in zip(*steps, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


def test_loss_is_mean_over_samples_not_outputs():
    """The tutorial divides the summed log-loss by y.shape[1] (the outputs); ours by samples."""
    model = ma.MLP([2, 3], ["sigmoid"], "binary_cross_entropy", backend="numpy", dtype="float64")
    X = np.zeros((4, 2))
    y = np.ones((4, 3))
    model.set_weights([np.zeros((2, 3)), np.zeros(3)])
    # every output is sigmoid(0) = 1/2, each sample contributes 3 * log 2
    assert model.evaluate(X, y) == pytest.approx(3 * np.log(2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_loss_from_logits_does_not_saturate(dtype):
    """Clipped probabilities make the tutorial's log-loss saturate at -log(eps); ours is
    exact from the logits, also where float32 probabilities round to exactly 0 or 1."""
    xp = ma.get_backend("numpy").xp
    bce = get_loss("binary_cross_entropy")
    sig = get_activation("sigmoid")
    z = np.array([[-200.0], [-40.0], [60.0], [200.0]], dtype=dtype)
    y = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=dtype)
    yhat = sig.forward(z, xp=xp)
    per_sample = [bce.value_sum(z[i : i + 1], yhat[i : i + 1], y[i : i + 1], xp) for i in range(4)]
    np.testing.assert_allclose(per_sample, [200.0, 40.0, 60.0, 200.0], rtol=1e-6)
    assert all(np.isfinite(per_sample))
    # the clipped version the tutorial uses cannot tell 40 from 200
    eps = np.finfo(float).eps
    clipped = [-np.log(np.clip(float(1 / (1 + np.exp(-v))), eps, None)) for v in (-40.0, -200.0)]
    assert clipped[0] == clipped[1]


def test_cross_entropy_from_logits_is_exact_for_confident_predictions():
    xp = ma.get_backend("numpy").xp
    ce = get_loss("cross_entropy")
    softmax = get_activation("softmax")
    z = np.array([[0.0, 300.0, -300.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    value = ce.value_sum(z, softmax.forward(z, xp=xp), y, xp)
    assert np.isfinite(value)
    assert float(value) == pytest.approx(300.0, rel=1e-6)


def test_tutorial_experiment_trains_instead_of_diverging(backend_name):
    """The tutorial's problem (circles, 2-4-3-1, relu/relu/sigmoid, full batch) diverges near
    iteration 145 with its bugs. With them fixed and the CLI's defaults (Glorot init, Adam
    lr 0.03, 300 full-batch epochs) it trains to high accuracy with a finite, falling loss."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=1000, factor=0.5, noise=0.1, random_state=0)
    model = ma.MLP(
        [2, 4, 3, 1],
        ["relu", "relu", "sigmoid"],
        "binary_cross_entropy",
        backend=backend_name,
        dtype="float32",
        seed=0,
    )
    history = ma.fit(model, X, y, epochs=300, optimizer=ma.optim.Adam(lr=0.03))
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert np.mean(model.predict(X) == y) > 0.95


def test_tutorial_plain_gradient_descent_stays_finite(backend_name):
    """The tutorial's own optimizer (full-batch gradient descent from its N(0, 0.1) init) no
    longer blows up: the loss stays finite and ends lower than it started."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=1000, factor=0.5, noise=0.1, random_state=0)
    model = ma.MLP(
        [2, 4, 3, 1],
        ["relu", "relu", "sigmoid"],
        "binary_cross_entropy",
        backend=backend_name,
        dtype="float64",
        init="normal",
        seed=3,
    )
    history = ma.fit(model, X, y, epochs=150, optimizer=ma.optim.SGD(lr=2.0))
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
