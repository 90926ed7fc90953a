"""The public model API, training and its guards against bad input, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma

from .helpers import make_data

TUTORIAL = ([2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy")


def test_same_seed_gives_same_weights_on_every_backend(backend_name):
    ref = ma.MLP(*TUTORIAL, backend="numpy", dtype="float64", seed=42)
    other = ma.MLP(*TUTORIAL, backend=backend_name, dtype="float64", seed=42)
    for a, b in zip(ref.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [w.shape for w in other.get_weights()] == [(2, 4), (4,), (4, 3), (3,), (3, 1), (1,)]


@pytest.mark.parametrize("init", ["he", "glorot", "normal"])
def test_initializers(init):
    model = ma.MLP([50, 40, 2], backend="numpy", dtype="float64", seed=0, init=init)
    W1, b1 = model.get_weights()[:2]
    if init == "he":
        assert W1.std() == pytest.approx(np.sqrt(2 / 50), rel=0.1)
        assert not b1.any()
    elif init == "glorot":
        assert np.abs(W1).max() <= np.sqrt(6 / 90)
    else:
        assert W1.std() == pytest.approx(0.1, rel=0.1) and b1.any()


def test_backends_agree_with_numpy_float64(backend_name, rng):
    """Forward, gradients and one step of each optimizer against the NumPy float64 reference."""
    widths, acts, loss = [5, 7, 6, 3], ["tanh", "relu", "softmax"], "cross_entropy"
    X, y = make_data(rng, 33, widths, loss)
    for dtype, rtol in (("float64", 1e-9), ("float32", 1e-4)):
        ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=2)
        other = ma.MLP(widths, acts, loss, backend=backend_name, dtype=dtype, seed=2)
        out_ref = ref.backend.to_numpy(ref.forward(X))
        np.testing.assert_allclose(
            other.backend.to_numpy(other.forward(X)), out_ref, rtol=rtol, atol=rtol * 1e-2
        )
        l_ref, g_ref = ref.gradients(X, y)
        l_o, g_o = other.gradients(X, y)
        assert l_o == pytest.approx(l_ref, rel=rtol)
        for a, b in zip(g_o, g_ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=rtol * 10, atol=rtol * np.abs(b).max())
        for make_opt in (
            lambda: ma.optim.SGD(lr=0.1),
            lambda: ma.optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
            lambda: ma.optim.Adam(lr=0.01),
        ):
            r, o = ref.copy(), other.copy()
            for _ in range(2):
                ma.fit(r, X, y, epochs=1, optimizer=(opt_r := make_opt()), shuffle=False)
                ma.fit(o, X, y, epochs=1, optimizer=(opt_o := make_opt()), shuffle=False)
            del opt_r, opt_o
            for a, b in zip(o.get_weights(), r.get_weights(), strict=True):
                np.testing.assert_allclose(a, b, rtol=rtol * 10, atol=rtol)


def test_predict_and_predict_proba_shapes(backend_name, rng):
    X = rng.normal(size=(10, 4))
    binary = ma.MLP([4, 3, 1], backend=backend_name, seed=0)
    assert binary.predict(X).shape == (10,) and set(binary.predict(X)) <= {0, 1}
    assert binary.predict_proba(X).shape == (10, 1)
    multi = ma.MLP([4, 3, 5], backend=backend_name, seed=0)
    assert multi.predict(X).shape == (10,) and multi.predict(X).max() < 5
    np.testing.assert_allclose(multi.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)
    multilabel = ma.MLP([4, 3, 2], ["relu", "sigmoid"], backend=backend_name, seed=0)
    assert multilabel.loss == "binary_cross_entropy" and multilabel.predict(X).shape == (10, 2)
    reg = ma.MLP([4, 3, 1], ["relu", "identity"], backend=backend_name, seed=0)
    assert reg.loss == "squared_error" and reg.predict(X).dtype == np.float32
    with pytest.raises(ValueError, match="predict_proba"):
        reg.predict_proba(X)


def test_to_copies_weights_across_backends(backend_name):
    model = ma.MLP(*TUTORIAL, backend="numpy", seed=1)
    moved = model.to(backend_name)
    assert moved.backend.name == backend_name
    for a, b in zip(moved.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    moved.set_weights([w * 0 for w in moved.get_weights()])
    assert model.get_weights()[0].any()  # a copy, not a view


def test_fit_learns_and_records_history(backend_name):
    from sklearn.datasets import make_moons

    X, y = make_moons(400, noise=0.1, random_state=0)
    model = ma.MLP([2, 16, 16, 1], backend=backend_name, seed=0)
    history = ma.fit(
        model,
        X[:300],
        y[:300],
        epochs=60,
        batch_size=32,
        optimizer=ma.optim.Adam(lr=0.01),
        validation_data=(X[300:], y[300:]),
    )
    assert history.n_epochs == 60
    assert set(history) >= {"loss", "val_loss", "val_accuracy", "time", "samples_per_sec"}
    assert history["loss"][-1] < history["loss"][0] / 3
    assert history["val_accuracy"][-1] > 0.95
    assert np.mean(model.predict(X[300:]) == y[300:]) == pytest.approx(history["val_accuracy"][-1])


def test_regression_and_integer_labels(backend_name, rng):
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    reg = ma.MLP([3, 16, 1], ["tanh", "identity"], backend=backend_name, seed=0)
    ma.fit(reg, X, y, epochs=200, optimizer=ma.optim.Adam(lr=0.02))
    assert np.mean((reg.predict(X) - y) ** 2) < 0.05
    labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)  # 0, 1, 2
    clf = ma.MLP([3, 16, 3], backend=backend_name, seed=0)
    ma.fit(clf, X, labels, epochs=200, optimizer=ma.optim.Adam(lr=0.02))
    assert np.mean(clf.predict(X) == labels) > 0.9


def test_callback_can_stop_training():
    X, y = make_data(np.random.default_rng(0), 20, [2, 3, 1], "binary_cross_entropy")
    model = ma.MLP([2, 3, 1], backend="numpy", seed=0)
    seen = []
    history = ma.fit(model, X, y, epochs=50, callbacks=[lambda e, logs: seen.append(e) or e == 4])
    assert seen == [1, 2, 3, 4] and history.n_epochs == 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_error_and_keeps_finite_weights(backend_name):
    X, y = make_data(np.random.default_rng(0), 64, [3, 8, 1], "squared_error")
    y = y * 1e3
    model = ma.MLP([3, 8, 1], ["relu", "identity"], backend=backend_name, dtype="float32", seed=0)
    with pytest.raises(ma.TrainingDivergedError, match="epoch"):
        ma.fit(model, X, y, epochs=200, optimizer=ma.optim.SGD(lr=10.0))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_nan_injected_into_weights_is_caught(backend_name):
    X, y = make_data(np.random.default_rng(0), 16, [2, 4, 1], "binary_cross_entropy")
    model = ma.MLP([2, 4, 1], backend=backend_name, seed=0)
    params = list(model.params)
    bad = model.get_weights()[0]
    bad[0, 0] = np.nan
    params[0] = model.backend.asarray(bad, model.dtype)
    model.set_params(params)
    with pytest.raises(ma.TrainingDivergedError, match="nan"):
        ma.fit(model, X, y, epochs=3)


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.array([[np.nan, 1.0]]), [1], ValueError, "NaN"),
        (np.array([[np.inf, 1.0]]), [1], ValueError, "infinity"),
        (np.ones((2, 2)), [np.nan, 1], ValueError, "NaN"),
        (np.empty((0, 2)), [], ValueError, "0 sample"),
        (np.ones(2), [1], ValueError, "2D"),
        (np.ones((3, 5)), [1, 0, 1], ValueError, "features"),
        (np.ones((3, 2)), [1, 0], ValueError, "different numbers of samples"),
        (np.ones((2, 2)), [2, 0], ValueError, r"\[0, 1\]"),
        (np.ones((2, 2)), ["a", "b"], TypeError, "numeric"),
    ],
)
def test_bad_data_gets_clear_errors(X, y, error, match):
    model = ma.MLP(*TUTORIAL, backend="numpy", seed=0)
    with pytest.raises(error, match=match):
        ma.fit(model, X, y, epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": [2, 3], "activations": ["swish"]}, "unknown activation 'swish'; valid"),
        ({"layers": [2, 3], "loss": "hinge"}, "unknown loss 'hinge'; valid"),
        ({"layers": [2, 3, 1], "activations": ["relu"]}, "need 2 activations"),
        ({"layers": [2, 3, 1], "activations": ["softmax", "sigmoid"]}, "only valid on the output"),
        ({"layers": [2, 1], "activations": ["relu"], "loss": "binary_cross_entropy"}, "sigmoid"),
        ({"layers": [2, 1], "activations": ["softmax"]}, "at least 2"),
        ({"layers": [2]}, "at least an input and an output"),
        ({"layers": [2, 0, 1]}, "at least 1"),
        ({"layers": [2, 1], "dtype": "float16"}, "float32 or float64"),
        ({"layers": [2, 1], "init": "zeros"}, "unknown init"),
        (
            {"layers": [2, 1], "backend": "tpu"},
            "unknown backend 'tpu'; valid backends: auto, cupy, numba, numpy",
        ),
    ],
)
def test_bad_model_specs_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ma.MLP(**kwargs)


def test_bad_fit_arguments():
    X, y = make_data(np.random.default_rng(0), 8, [2, 3, 1], "binary_cross_entropy")
    model = ma.MLP([2, 3, 1], backend="numpy")
    with pytest.raises(ValueError, match="epochs"):
        ma.fit(model, X, y, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        ma.fit(model, X, y, batch_size=-1)
    with pytest.raises(TypeError, match="optimizer"):
        ma.fit(model, X, y, optimizer=object())
    with pytest.raises(ValueError, match="learning rate"):
        ma.optim.SGD(lr=0)
    with pytest.raises(
        ValueError,
        match="unknown optimizer 'adadelta'; valid optimizers: adagrad, adam, adamw, lamb, lars",
    ):
        ma.optim.get_optimizer("adadelta")


def test_set_weights_is_validated():
    model = ma.MLP(*TUTORIAL, backend="numpy")
    weights = model.get_weights()
    with pytest.raises(ValueError, match="expected 6"):
        model.set_weights(weights[:-1])
    with pytest.raises(ValueError, match="W2 has shape"):
        model.set_weights([weights[0], weights[1], np.zeros((3, 4)), *weights[3:]])
    weights[1][0] = np.inf
    with pytest.raises(ValueError, match="b1 contains inf"):
        model.set_weights(weights)


def test_weights_passed_in_are_copied(backend_name):
    # Training updates parameters in place: a model built from (or given) the caller's arrays
    # must not write into them, nor into another model built from the same list.
    w = ma.MLP(*TUTORIAL, backend="numpy", dtype="float64", seed=0).get_weights()
    before = [x.copy() for x in w]
    a = ma.MLP(*TUTORIAL, backend=backend_name, dtype="float64", weights=w)
    b = ma.MLP(*TUTORIAL, backend=backend_name, dtype="float64", weights=w)
    c = ma.MLP(*TUTORIAL, backend=backend_name, dtype="float64", seed=1)
    c.set_weights(w)
    X = np.random.default_rng(0).normal(size=(16, 2))
    y = (X[:, 0] > 0).astype(float)
    for trained in (a, c):
        ma.fit(trained, X, y, epochs=2, optimizer="sgd")
        assert any(not np.array_equal(p, q) for p, q in zip(trained.get_weights(), before))
    for model_weights in (w, b.get_weights()):
        for p, q in zip(model_weights, before, strict=True):
            np.testing.assert_array_equal(p, q)


def test_registry_errors(monkeypatch):
    from mlp_accel import backends

    with pytest.raises(ValueError, match="valid backends: auto, cupy, numba, numpy"):
        ma.get_backend("jax")
    assert "numpy" in ma.available_backends()
    assert ma.get_backend("numpy") is ma.get_backend("NumPy")
    monkeypatch.setenv("MLP_ACCEL_BACKEND", "numpy")
    assert ma.get_backend("auto").name == "numpy"
    monkeypatch.setitem(backends.BACKENDS, "broken", "mlp_accel.no_such_module:Nothing")
    with pytest.raises(RuntimeError, match="backend 'broken' is unavailable"):
        ma.get_backend("broken")
    status = backends.backend_status()
    assert status["broken"][0] is False and "unavailable" in status["broken"][1]


def test_forward_logits_are_the_output_pre_activations(backend_name):
    X = np.random.default_rng(0).normal(size=(16, 3))
    model = ma.MLP([3, 4, 2], activations=["tanh", "softmax"], backend=backend_name,
                   dtype="float64", seed=0)  # fmt: skip
    W1, b1, W2, b2 = model.get_weights()
    expected = np.tanh(X @ W1 + b1) @ W2 + b2
    logits = model.backend.to_numpy(model.forward(X, logits=True))
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-14)
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(model.backend.to_numpy(model.forward(X)), softmax, rtol=1e-12)
