"""The prediction path (``mlp_accel._inference``): the hooks' bits, with any thread count.

``MLP.forward_device`` (and so ``forward``, ``predict`` and ``predict_proba``) runs a lean
plan of the backend's layer functions on the CPU backends; these tests hold it to the
forward pass through the hooks bit for bit, across backends, dtypes, activations, batch
sizes, thread counts and splits of a batch at its chunk boundaries, and check that a plan
follows its model's weights and backend.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import _inference
from mlp_accel.activations import get_activation
from mlp_accel.backends import get_backend
from mlp_accel.backends._chunks import chunk_plan
from mlp_accel.backends.numpy_backend import NumpyBackend

BACKENDS = ["numpy", "numba"]

NETWORKS = [
    ([64, 256, 256, 10], None),  # the bench's: relu hidden layers, softmax output
    ([5, 80, 3], ["tanh", "sigmoid"]),
    ([7, 70, 70, 4], ["gelu", "silu", "identity"]),
    ([3, 100, 1], ["relu", "sigmoid"]),
    ([6, 90, 2], ["elu", "softmax"]),
]


def _hooked(model: ma.MLP, X: np.ndarray) -> np.ndarray:
    """The forward pass through the backend's hooks, as every prediction ran before."""
    return _inference._hooked(model, X, model._fused_network())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers, activations", NETWORKS)
def test_predictions_are_the_hooks_bits_with_any_thread_count(backend, dtype, layers, activations):
    model = ma.MLP(layers, activations, backend=backend, dtype=dtype, seed=3)
    assert model._fused_network() is None  # wide enough for the per-layer path on numba
    rng = np.random.default_rng(0)
    for n in (1, 3, 64, 700):
        X = rng.standard_normal((n, layers[0])).astype(dtype)
        expected = _hooked(model, X)
        for threads in (1, 2, 3):
            with ma.threads(threads):
                out = model.forward_device(X)
                proba = model.predict_proba(X) if model.loss != "squared_error" else out
            assert out.dtype == expected.dtype
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_array_equal(proba, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_split_at_its_chunk_boundaries_gives_the_same_rows(backend):
    layers = [64, 256, 256, 10]
    model = ma.MLP(layers, backend=backend, seed=1)
    X = np.random.default_rng(1).standard_normal((1500, 64)).astype("float32")
    plan = chunk_plan(len(X), tuple(layers))
    assert len(plan) > 2
    cut = plan[2][0]
    whole = model.predict_proba(X)
    parts = np.concatenate([model.predict_proba(X[:cut]), model.predict_proba(X[cut:])])
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(model.predict(X), whole.argmax(axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_plan_follows_new_and_trained_weights(backend):
    model = ma.MLP([4, 70, 3], backend=backend, seed=0)
    X = np.random.default_rng(2).standard_normal((50, 4)).astype("float32")
    before = model.predict_proba(X)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    changed = model.predict_proba(X)
    assert not np.array_equal(before, changed)
    np.testing.assert_array_equal(changed, _hooked(model, X))
    # an optimizer updates the parameters in place: the plan sees them
    ma.fit(model, X, np.arange(50) % 3, epochs=2, optimizer=ma.optim.Adam(lr=0.1))
    trained = model.predict_proba(X)
    assert not np.array_equal(trained, changed)
    np.testing.assert_array_equal(trained, _hooked(model, X))


def test_the_plan_follows_a_move_to_another_backend():
    model = ma.MLP([4, 70, 3], seed=0)  # auto: numpy until a fit settles it
    X = np.random.default_rng(3).standard_normal((20, 4)).astype("float32")
    model.predict_proba(X)
    model.backend = get_backend("numba")
    model._params = [model.backend.asarray(p, "float32") for p in model.get_weights()]
    model._fused, model._fused_checked = None, False
    out = model.predict_proba(X)
    assert _inference._plan(model).backend is model.backend
    np.testing.assert_array_equal(out, _hooked(model, X))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_the_plan_does_not_take_run_the_hooks(backend):
    model = ma.MLP([6, 80, 3], backend=backend, seed=0)
    X = np.random.default_rng(4).standard_normal((30, 6))
    for odd in (X, np.asfortranarray(X.astype("float32")), X.astype("float32")[:, ::1][::2]):
        np.testing.assert_array_equal(model.forward_device(odd), _hooked(model, odd))


def test_a_backend_with_its_own_dense_forward_keeps_it():
    class Doubling(NumpyBackend):
        name = "numpy"

        def dense_forward(self, a_prev, W, b, activation):
            z, a = super().dense_forward(a_prev, W, b, activation)
            return z, 2 * a

    assert Doubling().forward_layer(get_activation("relu"), "float32") is None
    model = ma.MLP([3, 5, 2], backend=Doubling(), seed=0)
    X = np.ones((4, 3), dtype="float32")
    np.testing.assert_array_equal(model.forward_device(X), _hooked(model, X))


def test_a_fused_network_runs_its_kernel():
    model = ma.MLP([2, 4, 3, 1], ["relu", "relu", "sigmoid"], backend="numba", seed=0)
    assert model._fused_network() is not None
    X = np.random.default_rng(5).standard_normal((300, 2)).astype("float32")
    with ma.threads(2):
        np.testing.assert_array_equal(model.predict_proba(X), _hooked(model, X))
