"""What only the Numba backend has: its kernel tiers, threads, compilation.

Every backend-parametrized test of the project also runs on numba (as users run it: the
tier chosen per job); these tests check that each tier (the per-layer kernels beside BLAS,
the generic network kernel, the kernel specialized on a shape) agrees with NumPy float64
and with the others, on shapes and batch sizes that exercise the blocking and the chunks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlp_accel as ma

from .helpers import make_data

numba = pytest.importorskip("numba")

from mlp_accel.backends.base import NetworkSpec  # noqa: E402
from mlp_accel.backends.numba import fused as _numba_fused  # noqa: E402
from mlp_accel.backends.numba.backend import NumbaBackend  # noqa: E402

RTOL = {"float64": 1e-7, "float32": 1e-4}

#: Every hidden activation in one network, so each output pair costs one compilation.
HIDDEN = ["relu", "leaky_relu", "sigmoid", "tanh", "identity"]
HIDDEN_WIDTHS = [2, 3, 3, 3, 3, 3]

#: Output activation, loss, output width: the matched pairs and squared error through others.
OUTPUTS = [
    ("sigmoid", "binary_cross_entropy", 2),
    ("softmax", "cross_entropy", 3),
    ("identity", "squared_error", 2),
    ("tanh", "squared_error", 2),
    ("softmax", "squared_error", 3),
]


def _layers(out_act: str, loss: str, k: int) -> tuple[list[int], list[str]]:
    """Widths and activations of an output case: the first runs every hidden activation,
    the others their output layer behind one hidden layer (a third of the compile time)."""
    if (out_act, loss, k) == OUTPUTS[0]:
        return [*HIDDEN_WIDTHS, k], [*HIDDEN, out_act]
    return [2, 3, k], ["tanh", out_act]


TIERS = ("layers", "generic", "specialized")


def _backend(tier: str | None = None) -> NumbaBackend:
    """A private backend that runs every model on ``tier`` (``None``: per job, as users)."""
    return NumbaBackend(tier=tier)


def _assert_close(actual, desired, rtol):
    # atol scaled to the values: entries that cancel to ~0 carry only absolute rounding error
    scale = max(1.0, float(np.max(np.abs(desired))))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * 1e-3 * scale)


def _compare(widths, acts, loss, dtype, backend, rng, batch_sizes=(1, 3, 37)):
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=3)
    model = ma.MLP(widths, acts, loss, backend=backend, dtype=dtype, seed=3)
    model.set_weights([w.astype(dtype) for w in ref.get_weights()])
    ref.set_weights(model.get_weights())  # the same (possibly float32-rounded) weights
    rtol = RTOL[dtype]
    for n in batch_sizes:
        X, y = make_data(rng, n, widths, loss)
        X = X.astype(dtype).astype("float64")
        _assert_close(np.asarray(model.forward(X)), ref.forward(X), rtol)
        loss_ref, grads_ref = ref.gradients(X, y)
        loss_val, grads = model.gradients(X, y)
        assert loss_val == pytest.approx(loss_ref, rel=rtol)
        for g, g_ref in zip(grads, grads_ref, strict=True):
            assert g.dtype == np.dtype(dtype)
            _assert_close(g, g_ref, rtol)
    return model


@pytest.mark.parametrize("out_act, loss, k", OUTPUTS)
def test_every_tier_matches_numpy_float64(out_act, loss, k, rng):
    widths, acts = _layers(out_act, loss, k)
    spec = NetworkSpec(tuple(widths), tuple(acts), loss, "float64")
    assert _numba_fused.supports(spec)
    for tier in ("layers", "specialized") if (out_act, loss, k) != OUTPUTS[0] else TIERS:
        backend = _backend(tier)
        model = _compare(widths, acts, loss, "float64", backend, rng)
        assert (model._fused_network() is None) == (tier == "layers")


@pytest.mark.parametrize("out_act, loss, k", OUTPUTS[:1])
def test_float32_tiers_match_numpy_float64(out_act, loss, k, rng):
    widths, acts = _layers(out_act, loss, k)
    for tier in TIERS:
        _compare(widths, acts, loss, "float32", _backend(tier), rng)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_tiers_agree_on_a_batch_of_several_chunks(dtype, rng):
    """Many blocks, a ragged tail and several chunks on the worker threads."""
    from mlp_accel.backends._chunks import chunk_plan

    widths, acts, loss = [2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"
    X, y = make_data(rng, 40_099, widths, loss)
    assert len(chunk_plan(40_099, tuple(widths))) > 1
    results = []
    for tier in TIERS:
        model = ma.MLP(widths, acts, loss, backend=_backend(tier), dtype=dtype, seed=0)
        results.append(model.gradients(X, y))
    for loss_b, grads_b in results[1:]:
        assert results[0][0] == pytest.approx(loss_b, rel=RTOL[dtype])
        for a, b in zip(results[0][1], grads_b, strict=True):
            _assert_close(a, b, RTOL[dtype])


def test_narrow_networks_too_large_to_unroll_run_the_generic_kernel(rng):
    """No kernel is specialized on a narrow network over 128 weights: asked for one, the
    backend runs the generic kernel, which is as fast there."""
    widths, acts, loss = [20, 30, 3], ["relu", "softmax"], "cross_entropy"
    spec = NetworkSpec(tuple(widths), tuple(acts), loss, "float64")
    assert not _numba_fused.supports(spec)
    backend = _backend("specialized")
    assert backend.choose_tier(spec)[0] == "generic"
    assert backend.fused_network(spec).tier == "generic"
    _compare(widths, acts, loss, "float64", backend, rng, batch_sizes=(1, 45, 70))


def test_wide_network_takes_the_per_layer_path(rng):
    backend = _backend("generic")
    spec = NetworkSpec((4, 65, 2), ("tanh", "sigmoid"), "binary_cross_entropy", "float64")
    assert backend.fused_network(spec) is None
    assert backend.choose_tier(spec)[0] == "layers"
    _compare([4, 65, 2], ["tanh", "sigmoid"], "binary_cross_entropy", "float64", backend, rng)


def test_an_unknown_tier_is_refused():
    with pytest.raises(ValueError, match="unknown numba kernel tier 'fast'"):
        NumbaBackend(tier="fast")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: ma.optim.SGD(0.1),
        lambda: ma.optim.SGD(0.1, momentum=0.9),
        lambda: ma.optim.SGD(0.1, momentum=0.9, nesterov=True),
        lambda: ma.optim.Adam(0.01),
    ],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_optimizer_steps_match_numpy(optimizer, dtype, rng):
    widths, acts, loss = [3, 70, 2], ["relu", "sigmoid"], "binary_cross_entropy"
    X, y = make_data(rng, 16, widths, loss)
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=1)
    model = ma.MLP(widths, acts, loss, backend="numba", dtype=dtype, seed=1)
    ref.set_weights(model.get_weights())
    opt_ref, opt = optimizer(), optimizer()
    for _ in range(2):  # the second step uses the velocity / moments of the first
        ma.fit(ref, X, y, epochs=1, optimizer=opt_ref, shuffle=False)
        ma.fit(model, X, y, epochs=1, optimizer=opt, shuffle=False)
    for w, w_ref in zip(model.get_weights(), ref.get_weights(), strict=True):
        _assert_close(w, w_ref, RTOL[dtype])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("tier", ["specialized", "layers"])
def test_nan_injected_into_training_is_caught(tier):
    X, y = make_data(np.random.default_rng(0), 50, [2, 4, 3, 1], "binary_cross_entropy")
    for value in (np.nan, np.inf):
        model = ma.MLP([2, 4, 3, 1], backend=_backend(tier), seed=0)
        params = model.params
        params[2][1, 2] = value  # past set_weights' validation, as a numerical accident would
        model.set_params(params)
        with pytest.raises(ma.TrainingDivergedError):
            ma.fit(model, X, y, epochs=2, optimizer=ma.optim.SGD(0.1))


def test_no_numba_thread_pool_and_the_same_bits_on_any_thread_count(rng):
    """Every kernel is serial: Numba's own pool never starts, and the package's worker
    threads run fixed chunks, so one thread and several give the same weights."""
    from numba.np.ufunc import parallel

    widths, acts, loss = [2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"
    X, y = make_data(rng, 40_000, widths, loss)
    for tier in TIERS:
        results = []
        for count in (1, 2):
            with ma.threads(count):
                model = ma.MLP(widths, acts, loss, backend=_backend(tier), seed=5)
                ma.fit(model, X, y, epochs=2, optimizer=ma.optim.Adam(0.01))
                results.append(model.get_weights())
        for a, b in zip(*results, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not getattr(parallel, "_is_initialized", False)


def test_describe_names_version_and_threads():
    info = ma.get_backend("numba").describe()
    assert info["numba"] == numba.__version__
    assert "worker threads" in info["threads"]


def test_warmup_compiles_the_fused_kernels():
    spec = NetworkSpec((2, 3, 1), ("tanh", "sigmoid"), "binary_cross_entropy", "float64")
    backend = _backend()
    backend.warmup(spec)
    module = _numba_fused.load_module(spec)
    for name in ("train", "forward"):
        assert getattr(module, name).signatures, name
    # written under the cache directory, where Numba's cache=True can keep its machine code
    assert Path(module.__file__).parent == _numba_fused.cache_dir()


def test_generated_source_is_deterministic():
    spec = NetworkSpec((2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert _numba_fused.generate_source(spec) == _numba_fused.generate_source(spec)
    assert "parallel=True" not in _numba_fused.generate_source(spec)
    assert "nogil=True" in _numba_fused.generate_source(spec)
    too_wide = NetworkSpec((2, 65, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert not _numba_fused.supports(too_wide)
    with pytest.raises(ValueError, match="no specialized network kernel"):
        _numba_fused.generate_source(too_wide)


def test_fastmath_keeps_nan_and_inf_semantics():
    from mlp_accel.backends.numba.kernels import FASTMATH

    assert set(FASTMATH) <= {"reassoc", "contract", "arcp"}


def test_importing_the_package_neither_imports_numba_nor_compiles():
    code = (
        "import sys, mlp_accel as ma\n"
        "assert 'numba' not in sys.modules\n"
        "b = ma.get_backend('numba')\n"
        "from mlp_accel.backends.numba import kernels as K\n"
        "assert all(not k.signatures for k in K.KERNELS.values())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_numba_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    with pytest.raises(ma.BackendUnavailableError, match="numba is not installed"):
        NumbaBackend()
