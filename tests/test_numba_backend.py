"""What only the Numba backend has: fused kernels, their two paths, threads, compilation.

Every backend-parametrized test of the project also runs on numba; these tests check that
the generated small-network kernel and the per-layer (BLAS) kernels agree with NumPy float64
and with each other, on shapes and batch sizes that exercise the blocking and the threads.
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

from mlp_accel.backends import _numba_fused  # noqa: E402
from mlp_accel.backends.base import NetworkSpec  # noqa: E402
from mlp_accel.backends.numba_backend import NumbaBackend  # noqa: E402

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


def precompile_tasks() -> list[dict]:
    """The kernels these tests compile, in the order they need them.

    The session fixture in conftest.py hands them to the background compiler as the suite
    starts, so that on a machine with two cores they compile beside the other tests.
    """
    from mlp_accel.backends import _numba_compile as C

    def spec(widths, acts, loss, dtype):
        return NetworkSpec(tuple(widths), tuple(acts), loss, dtype)

    tasks = [C.fused_task(spec(*_layers(*out), out[1], "float64")) for out in OUTPUTS]
    tasks.append(C.fused_task(spec(*_layers(*OUTPUTS[0]), OUTPUTS[0][1], "float32")))
    tutorial = ([2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy")
    for dtype in ("float64", "float32"):
        tasks.append(C.fused_task(spec(*tutorial, dtype), parallel=True))
    tasks.append(
        C.fused_task(
            spec([20, 30, 3], ["relu", "softmax"], "cross_entropy", "float64"), parallel=True
        )
    )
    tasks.append(C.layer_task("float64", parallel=True))
    tasks.append(C.fused_task(spec(*tutorial, "float32")))
    warm = spec([2, 3, 1], ["tanh", "sigmoid"], "binary_cross_entropy", "float64")
    tasks += [C.fused_task(warm), C.fused_task(warm, parallel=True)]
    return tasks


def _wait_for_precompiled() -> None:
    """Wait for the kernels the session fixture asked for: compiling them here as well
    would only race the child process that is already compiling them."""
    from mlp_accel.backends import _numba_compile as C

    keys = [C.task_key(t) for t in precompile_tasks()]
    C.wait([k for k in keys if C.state(k) is not None])


def _backend(*, fused: bool = True, parallel: bool = False) -> NumbaBackend:
    """A private backend instance: fused path on or off, parallel kernels forced or not.

    It compiles on first use, in this thread (test_numba_compile.py tests the background
    mode), so that the fused kernels these tests check are the ones that run.
    """
    _wait_for_precompiled()
    backend = NumbaBackend()
    backend.background = False
    if not fused:
        backend.fused_network = lambda spec: None  # the model then runs the per-layer hooks
    if parallel:
        backend.parallel_min_rows = 1
        backend.parallel_min_elements = 1
    return backend


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
def test_fused_and_per_layer_paths_match_numpy_float64(out_act, loss, k, rng):
    widths, acts = _layers(out_act, loss, k)
    spec = NetworkSpec(tuple(widths), tuple(acts), loss, "float64")
    assert _numba_fused.supports(spec)
    for backend in (_backend(fused=True), _backend(fused=False)):
        model = _compare(widths, acts, loss, "float64", backend, rng)
        assert (model._fused_network() is not None) == (backend.fused_network(spec) is not None)


@pytest.mark.parametrize("out_act, loss, k", OUTPUTS[:1])
def test_float32_paths_match_numpy_float64(out_act, loss, k, rng):
    widths, acts = _layers(out_act, loss, k)
    for backend in (_backend(fused=True), _backend(fused=False)):
        _compare(widths, acts, loss, "float32", backend, rng)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_path_agrees_with_per_layer_path_on_a_large_batch(dtype, rng):
    """Many blocks, a ragged tail and both threads: the paths must agree with each other."""
    widths, acts, loss = [2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"
    X, y = make_data(rng, 4099, widths, loss)
    results = []
    for backend in (_backend(fused=True, parallel=True), _backend(fused=False)):
        model = ma.MLP(widths, acts, loss, backend=backend, dtype=dtype, seed=0)
        results.append(model.gradients(X, y))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, rel=RTOL[dtype])
    for a, b in zip(grads_a, grads_b, strict=True):
        _assert_close(a, b, RTOL[dtype])


def test_lane_block_kernel_for_wider_small_networks(rng):
    """Networks too big to unroll but at most 64 wide take the lane-block kernel."""
    widths, acts, loss = [20, 30, 3], ["relu", "softmax"], "cross_entropy"
    spec = NetworkSpec(tuple(widths), tuple(acts), loss, "float64")
    assert _numba_fused.supports(spec) and not _numba_fused._unrolled(spec)
    _compare(widths, acts, loss, "float64", _backend(parallel=True), rng, batch_sizes=(1, 45, 70))


def test_wide_network_takes_the_per_layer_path(rng):
    backend = _backend(parallel=True)  # the parallel twins of the elementwise kernels, too
    spec = NetworkSpec((4, 65, 2), ("tanh", "sigmoid"), "binary_cross_entropy", "float64")
    assert backend.fused_network(spec) is None
    _compare([4, 65, 2], ["tanh", "sigmoid"], "binary_cross_entropy", "float64", backend, rng)


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
@pytest.mark.parametrize("fused", [True, False])
def test_nan_injected_into_training_is_caught(fused):
    X, y = make_data(np.random.default_rng(0), 50, [2, 4, 3, 1], "binary_cross_entropy")
    for value in (np.nan, np.inf):
        model = ma.MLP([2, 4, 3, 1], backend=_backend(fused=fused), seed=0)
        params = model.params
        params[2][1, 2] = value  # past set_weights' validation, as a numerical accident would
        model.set_params(params)
        with pytest.raises(ma.TrainingDivergedError):
            ma.fit(model, X, y, epochs=2, optimizer=ma.optim.SGD(0.1))


def test_two_blas_threads_and_two_numba_threads(rng):
    """As a user has them on this machine: both pools at 2 threads, training still agrees."""
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    widths, acts, loss = [8, 80, 3], ["relu", "softmax"], "cross_entropy"
    X, y = make_data(rng, 300, widths, loss)
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(limits=2, user_api="blas"):
            results = []
            for backend in ("numpy", _backend(parallel=True), _backend(fused=True)):
                model = ma.MLP(widths, acts, loss, backend=backend, dtype="float64", seed=5)
                ma.fit(model, X, y, epochs=3, optimizer=ma.optim.Adam(0.01), shuffle=False)
                results.append(model.get_weights())
            info = _backend().describe()
    finally:
        numba.set_num_threads(previous)
    assert info["threads"] == str(min(2, numba.config.NUMBA_NUM_THREADS))
    for other in results[1:]:
        for w, w_ref in zip(other, results[0], strict=True):
            _assert_close(w, w_ref, 1e-7)


def test_describe_names_version_threading_layer_and_threads():
    info = ma.get_backend("numba").describe()
    assert info["numba"] == numba.__version__
    assert info["threading_layer"] in {"tbb", "omp", "workqueue"}
    assert int(info["threads"]) >= 1


def test_describe_runs_no_kernel_before_the_pool_starts(monkeypatch):
    """Before Numba's first parallel call there is no threading layer to ask for; describe
    says so instead of launching a kernel to start the pool."""
    from numba.np.ufunc import parallel

    backend = _backend()

    class NoKernels:
        def __getattr__(self, name):
            raise AssertionError(f"describe() ran the kernel {name}")

    def not_started():
        raise ValueError("Threading layer is not initialized.")

    monkeypatch.setattr(parallel, "_is_initialized", False)
    monkeypatch.setattr(numba, "threading_layer", not_started)
    monkeypatch.setattr(backend, "_kernels", NoKernels())
    info = backend.describe()
    assert info["threading_layer"].startswith("not started (requested: ")
    assert 1 <= int(info["threads"]) <= numba.config.NUMBA_NUM_THREADS


def test_warmup_compiles_the_fused_kernels():
    spec = NetworkSpec((2, 3, 1), ("tanh", "sigmoid"), "binary_cross_entropy", "float64")
    backend = _backend()
    backend.warmup(spec)
    module = _numba_fused.load_module(spec)
    for name in ("train_serial", "train_parallel", "forward_serial", "forward_parallel"):
        assert getattr(module, name).signatures, name
    # written under the cache directory, where Numba's cache=True can keep its machine code
    assert Path(module.__file__).parent == _numba_fused.cache_dir()


def test_generated_source_is_deterministic():
    spec = NetworkSpec((2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert _numba_fused.generate_source(spec) == _numba_fused.generate_source(spec)
    assert "parallel=True" in _numba_fused.generate_source(spec)
    too_wide = NetworkSpec((2, 65, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert not _numba_fused.supports(too_wide)
    with pytest.raises(ValueError, match="no fused"):
        _numba_fused.generate_source(too_wide)


def test_fastmath_keeps_nan_and_inf_semantics():
    from mlp_accel.backends._numba_kernels import FASTMATH

    assert set(FASTMATH) <= {"reassoc", "contract", "arcp"}


def test_importing_the_package_neither_imports_numba_nor_compiles():
    code = (
        "import sys, mlp_accel as ma\n"
        "assert 'numba' not in sys.modules\n"
        "b = ma.get_backend('numba')\n"
        "from mlp_accel.backends import _numba_kernels as K\n"
        "assert all(not s.signatures for s, p in K.KERNELS.values())\n"
        "assert all(p is None or not p.signatures for s, p in K.KERNELS.values())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_numba_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    with pytest.raises(ma.BackendUnavailableError, match="numba is not installed"):
        NumbaBackend()
