"""The CuPy backend's structure: small modules and functions, and the logic it
shares with the generic backend taken from ``base.py`` rather than written again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.activations import get_activation
from mlp_accel.backends import _layer_loop as layer_loop
from mlp_accel.backends import get_backend
from mlp_accel.backends.base import Backend, adam_bias_corrections
from mlp_accel.losses import get_loss

BACKENDS_DIR = Path(ma.__file__).parent / "backends"
CUPY_MODULES = sorted(
    [*(BACKENDS_DIR / "cupy").glob("*.py"), *(BACKENDS_DIR / "cupy" / "kernels").glob("*.py")]
)


def test_the_cupy_backend_is_a_package_of_split_modules():
    names = {str(p.relative_to(BACKENDS_DIR)) for p in CUPY_MODULES}
    assert not list(BACKENDS_DIR.glob("*cupy*.py"))
    assert {"cupy/backend.py", "cupy/device.py", "cupy/kernels/network.py"} <= names


def test_adam_bias_corrections_are_one_minus_beta_to_the_step():
    c1, c2 = adam_bias_corrections(0.9, 0.999, 3)
    assert c1 == pytest.approx(1 - 0.9**3, rel=1e-15)
    assert c2 == pytest.approx(1 - 0.999**3, rel=1e-15)
    assert adam_bias_corrections(0.5, 0.25, 1) == (0.5, 0.75)


def test_generic_adam_divides_by_the_bias_corrections():
    backend = get_backend("numpy")
    p, g = [np.array([1.0, -2.0])], [np.array([0.5, 0.25])]
    m, v = [np.zeros(2)], [np.zeros(2)]
    new_p, new_m, new_v = Backend.adam_update(backend, p, g, m, v, 2, 0.1, 0.9, 0.999, 1e-8)
    c1, c2 = adam_bias_corrections(0.9, 0.999, 2)
    want = p[0] - 0.1 * (new_m[0] / c1) / (np.sqrt(new_v[0] / c2) + 1e-8)
    np.testing.assert_array_equal(new_p[0], want)


NETWORKS = [
    ([3, 5, 1], ["tanh", "sigmoid"], "binary_cross_entropy"),
    ([4, 6, 5, 3], ["relu", "gelu", "softmax"], "cross_entropy"),
    ([2, 7, 2], ["silu", "identity"], "squared_error"),
]


@pytest.mark.parametrize("network", NETWORKS, ids=[n[2] for n in NETWORKS])
def test_layer_loss_and_gradients_matches_the_model(backend_name, network, rng):
    """The hook-by-hook pass a backend's warm-up (or a fused network's fallback) runs gives
    the model's loss and gradients: compared with NumPy float64."""
    layers, acts, loss = network
    backend = get_backend(backend_name)
    ref = ma.MLP(layers, acts, loss, backend="numpy", dtype="float64", seed=3)
    X = rng.standard_normal((40, layers[0]))
    y = rng.integers(0, layers[-1], 40) if loss == "cross_entropy" else rng.random((40, 1))
    if loss == "squared_error":
        y = rng.standard_normal((40, layers[-1]))
    Xn, yn = ref.prepare(X, y)
    want_loss, want = ref.loss_and_gradients(Xn, yn)
    params = [backend.asarray(w, "float64") for w in ref.get_weights()]
    got_loss, got = layer_loop.loss_and_gradients(
        backend,
        params,
        [get_activation(a) for a in acts],
        get_loss(loss),
        backend.asarray(Xn, "float64"),
        backend.asarray(yn, "float64"),
        40.0,
    )
    np.testing.assert_allclose(backend.to_numpy(got_loss), want_loss, rtol=1e-12)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-10, atol=1e-13)
