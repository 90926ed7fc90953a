"""The model's generic path uses only the array API standard; imports stay light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.backends import BACKENDS, Backend, get_backend

xps = pytest.importorskip("array_api_strict")


class StrictBackend(Backend):
    """The generic hooks on array_api_strict, which rejects anything outside the standard."""

    name = "array_api_strict"
    xp = xps
    device = "CPU_DEVICE"

    def asarray(self, x, dtype):
        return xps.asarray(np.asarray(x, dtype=dtype))

    def to_numpy(self, x):
        return np.from_dlpack(x)

    def is_device_array(self, x):
        return isinstance(x, type(xps.asarray(0.0)))

    def index_array(self, index):
        return xps.asarray(np.asarray(index, dtype=np.int64))


@pytest.mark.parametrize(
    ("widths", "activations", "loss"),
    [
        ([2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"),
        ([4, 6, 3], ["leaky_relu", "softmax"], "cross_entropy"),
        ([3, 5, 2], ["tanh", "sigmoid"], "squared_error"),
        ([3, 5, 3], ["sigmoid", "softmax"], "squared_error"),
        ([3, 5, 2], ["tanh", "identity"], "squared_error"),
    ],
)
def test_generic_path_runs_unmodified_on_array_api_strict(widths, activations, loss):
    from .helpers import make_data

    rng = np.random.default_rng(0)
    X, y = make_data(rng, 20, widths, loss)
    strict = ma.MLP(widths, activations, loss, backend=StrictBackend(), dtype="float64", seed=1)
    ref = ma.MLP(widths, activations, loss, backend="numpy", dtype="float64", seed=1)
    l_s, g_s = strict.gradients(X, y)
    l_r, g_r = ref.gradients(X, y)
    assert l_s == pytest.approx(l_r, rel=1e-12)
    for a, b in zip(g_s, g_r, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    for opt in (ma.optim.Adam(lr=0.01), ma.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)):
        ma.fit(strict, X, y, epochs=3, batch_size=8, optimizer=opt, validation_data=(X, y))
    np.testing.assert_array_equal(strict.predict(X).shape, ref.predict(X).shape)


def test_import_does_not_import_heavy_libraries():
    code = (
        "import sys, mlp_accel, mlp_accel.backends, mlp_accel.model, mlp_accel.train;"
        "heavy = [m for m in ('numba', 'cupy', 'torch', 'sklearn', 'matplotlib', 'dask')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("name", list(BACKENDS))
def test_backend_adds_no_public_method_and_keeps_signatures(name):
    """The contract test: a backend overrides hooks, it does not grow the interface."""
    try:
        backend = get_backend(name)
    except ma.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    base = _public_methods(Backend)
    mine = _public_methods(type(backend))
    extra = set(mine) - set(base)
    allowed = set(getattr(type(backend), "EXTRA_PUBLIC_METHODS", ()))
    assert extra <= allowed, f"{name} adds public methods {sorted(extra - allowed)}"
    for method, sig in base.items():
        assert list(mine[method].parameters) == list(sig.parameters), method
