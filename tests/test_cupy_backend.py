"""The cupy backend: start-up errors, fused kernels, parity with NumPy float64, micro-batches.

Numeric tests run against the ``cupy_backend`` fixture, twice where possible:

- ``gpu``: the real backend, where CuPy and a working GPU are found (skipped elsewhere);
- ``emulated``: the same backend code with a CPU stand-in for CuPy whose ``RawKernel`` runs
  the CUDA C sources in a threaded emulator (``_cuda_emulator.py``; needs ``g++``). This is
  how the kernels and their launch code are exercised on machines without a GPU.

The GPU check runs ``-k "cupy and not emulated"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.activations import get_activation
from mlp_accel.backends import (
    AUTO_ORDER,
    BACKENDS,
    Backend,
    BackendUnavailableError,
    get_backend,
)
from mlp_accel.backends.base import IDENTITY
from mlp_accel.backends.cupy import kernels as K
from mlp_accel.backends.numpy_backend import NumpyBackend
from mlp_accel.data import load_dataset
from mlp_accel.losses import get_loss

from . import _cuda_emulator as emulator
from . import _fake_cupy as fake_cupy

# -- start-up, registry, packaging (no GPU needed) ------------------------------------------


def _new_cupy_backend(**kwargs):
    from mlp_accel.backends.cupy.backend import CupyBackend

    return CupyBackend(**kwargs)


def _forget_env_after_test(monkeypatch, *names):
    """Unset ``names`` now and restore them after the test, also when the code under test
    writes them (``monkeypatch.delenv`` records nothing for a variable that is not set, so a
    value written later would leak into every following test)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _our_env():
    """The variables this package reads (libraries it loads may write their own)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("MLP_ACCEL_", "CUPY_"))}


def test_cupy_is_registered_and_preferred_by_auto():
    assert BACKENDS["cupy"] == "mlp_accel.backends.cupy.backend:CupyBackend"
    assert AUTO_ORDER[0] == "cupy"


def test_cupy_missing_raises_a_clear_runtime_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(RuntimeError, match="CuPy is not installed") as info:
        _new_cupy_backend()
    assert isinstance(info.value, BackendUnavailableError)
    assert "mlp-accel[cuda13]" in str(info.value)
    assert str(info.value).startswith("backend 'cupy' is unavailable")


def test_registry_reports_cupy_unavailable_without_cupy():
    try:
        import cupy  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("CuPy is installed here")
    with pytest.raises(BackendUnavailableError, match="CuPy is not installed"):
        get_backend("cupy")
    # auto still starts, on a CPU backend
    assert get_backend("auto").name != "cupy"


def test_no_gpu_raises_saying_so(monkeypatch):
    fake = fake_cupy.install(monkeypatch)
    fake.runtime.fail = RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    with pytest.raises(BackendUnavailableError, match=r"no usable GPU.*cudaErrorNoDevice"):
        _new_cupy_backend()
    fake.runtime.fail = None
    fake.runtime.device_count = 0
    with pytest.raises(BackendUnavailableError, match="no GPU found"):
        _new_cupy_backend()


def test_missing_device_index_raises(monkeypatch):
    fake_cupy.install(monkeypatch)
    with pytest.raises(BackendUnavailableError, match=r"GPU 3 does not exist.*has 1"):
        _new_cupy_backend(device=3)
    monkeypatch.setenv("MLP_ACCEL_DEVICE", "x")
    with pytest.raises(BackendUnavailableError, match="MLP_ACCEL_DEVICE"):
        _new_cupy_backend()


def test_device_and_tf32_from_environment(monkeypatch):
    fake = fake_cupy.install(monkeypatch)
    _forget_env_after_test(monkeypatch, "CUPY_TF32")
    monkeypatch.setenv("MLP_ACCEL_TF32", "1")
    before = _our_env()
    backend = _new_cupy_backend()
    assert backend.tf32 is True
    assert fake.compute_types[np.dtype("float32")] == 7  # TF32, through CuPy's switch
    monkeypatch.delenv("MLP_ACCEL_TF32")
    backend = _new_cupy_backend()
    assert backend.tf32 is False
    assert fake.compute_types[np.dtype("float32")] == 1
    assert backend.describe()["tf32"] == "off"
    assert backend.device == "cuda:0"
    # The variables are read as defaults, never written (CUPY_TF32 neither).
    before.pop("MLP_ACCEL_TF32")
    assert _our_env() == before


def test_tf32_is_per_backend_although_cupy_keeps_it_per_process(monkeypatch):
    fake = fake_cupy.install(monkeypatch)
    fast, exact = _new_cupy_backend(tf32=True), _new_cupy_backend(tf32=False)
    assert fake.compute_types[np.dtype("float32")] == 1  # the last one started
    fast._activate()  # what every hook does before it launches work
    assert fake.compute_types[np.dtype("float32")] == 7
    assert fast.describe()["tf32"] == "on"
    exact._activate()
    assert fake.compute_types[np.dtype("float32")] == 1


def test_tf32_without_cupys_switch_warns_instead_of_writing_the_environment(monkeypatch):
    fake_cupy.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "cupy._core", None)  # an older or newer CuPy
    _forget_env_after_test(monkeypatch, "CUPY_TF32")
    with pytest.warns(RuntimeWarning, match="CUPY_TF32"):
        backend = _new_cupy_backend(tf32=True)
    assert backend.tf32 is True
    assert "CUPY_TF32" not in os.environ


def test_bad_cupy_option_values_are_the_callers_errors(monkeypatch):
    from mlp_accel import backends

    fake_cupy.install(monkeypatch)
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(backends, "_failures", {})
    with pytest.raises(TypeError, match="device must be a GPU index"):
        get_backend("cupy", device="1")
    with pytest.raises(ValueError, match="device must be a GPU index"):
        get_backend("cupy", device=-1)
    with pytest.raises(TypeError, match="tf32 must be True or False"):
        get_backend("cupy", tf32="yes")
    with pytest.raises(BackendUnavailableError, match="GPU 1 does not exist"):
        get_backend("cupy", device=1)
    assert get_backend("cupy", device=0).device == "cuda:0"  # the failure above was device 1's


def test_get_backend_starts_one_cupy_backend_per_device_and_setting(monkeypatch):
    from mlp_accel import backends

    fake = fake_cupy.install(monkeypatch)
    fake.runtime.device_count = 2
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(backends, "_failures", {})
    _forget_env_after_test(monkeypatch, "MLP_ACCEL_DEVICE", "MLP_ACCEL_TF32", "CUPY_TF32")
    before = _our_env()
    first = get_backend("cupy", device=1, tf32=True)
    assert (first.device, first.tf32) == ("cuda:1", True)
    assert get_backend("CuPy", tf32=True, device=1) is first
    assert get_backend(("cupy", {"device": 1, "tf32": True})) is first
    assert get_backend(("cupy", {"device": 1}), tf32=True) is first
    other = get_backend("cupy", device=0)
    assert other is not first and (other.device, other.tf32) == ("cuda:0", False)
    assert get_backend("cupy") is get_backend("cupy", device=None)  # None is the default
    assert get_backend("auto", device=1, tf32=True) is first  # auto hands cupy its options
    status = backends.backend_status(device=1)
    assert status["cupy"][0] and status["cupy"][1]["device"] == "cuda:1"
    assert status["numpy"][0]  # numpy takes no device and is not given one
    with pytest.raises(TypeError, match="given twice"):
        get_backend(("cupy", {"device": 1}), device=0)
    assert _our_env() == before


def test_models_take_a_backend_with_options(monkeypatch):
    from mlp_accel import backends

    fake = fake_cupy.install(monkeypatch)
    fake.runtime.device_count = 2
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(backends, "_failures", {})
    monkeypatch.delenv("MLP_ACCEL_BACKEND", raising=False)
    model = ma.MLP([2, 3, 1], backend=("cupy", {"device": 1}), dtype="float64", seed=0)
    assert model.backend is get_backend("cupy", device=1)
    same = ma.MLP([2, 3, 1], backend=get_backend("cupy", device=1), dtype="float64", seed=0)
    assert same.backend is model.backend
    moved = model.to(("cupy", {"device": 0}))
    assert moved.backend.device == "cuda:0"
    np.testing.assert_array_equal(moved.get_weights()[0], model.get_weights()[0])
    # "auto" with options: the model waits for fit's choice, which gets the options it takes.
    pending = ma.MLP([2, 3, 1], backend=("auto", {"device": 1}), seed=0)
    assert pending.backend.name == "numpy" and pending.backend_choice is not None
    with pytest.raises(TypeError, match="takes no option 'colour'"):
        ma.MLP([2, 3, 1], backend=("auto", {"colour": 1}))
    with pytest.raises(TypeError, match="takes no option 'device'"):
        ma.MLP([2, 3, 1], backend=("numpy", {"device": 1}))


def test_importing_the_package_never_imports_cupy():
    code = (
        "import sys, mlp_accel, mlp_accel.backends.cupy.backend as c; "
        "mlp_accel.get_backend('numpy'); "
        "assert 'cupy' not in sys.modules, 'cupy imported'; "
        "assert 'numba' not in sys.modules, 'numba imported'"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_cli_device_and_tf32_options(monkeypatch):
    from mlp_accel import cli

    _forget_env_after_test(monkeypatch, "MLP_ACCEL_DEVICE", "MLP_ACCEL_TF32")
    monkeypatch.delenv("MLP_ACCEL_BACKEND", raising=False)
    before = _our_env()
    args = cli.build_parser().parse_args(["train", "--device", "2", "--tf32"])
    cli._apply_gpu_options(args)
    assert args.backend == ("auto", {"device": 2, "tf32": True})
    args = cli.build_parser().parse_args(["train", "--backend", "cupy", "--tf32"])
    cli._apply_gpu_options(args)
    assert args.backend == ("cupy", {"tf32": True})
    args = cli.build_parser().parse_args(["backends", "--device", "1"])
    cli._apply_gpu_options(args)
    assert args.backend == ("auto", {"device": 1})
    assert _our_env() == before  # handed over as arguments, not through the environment
    args = cli.build_parser().parse_args(
        ["predict", "--model", "m", "--data", "d", "--device", "-1"]
    )
    with pytest.raises(ValueError, match="--device"):
        cli._apply_gpu_options(args)
    args = cli.build_parser().parse_args(["train", "--backend", "numpy", "--tf32"])
    with pytest.raises(ValueError, match="apply to the cupy backend, not to 'numpy'"):
        cli._apply_gpu_options(args)


def test_cuda_extras_are_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(r.startswith("cupy-cuda12x") for r in extras["cuda12"])
    assert any(r.startswith("cupy-cuda13x") for r in extras["cuda13"])


# -- micro-batches (backend-generic; on NumPy here) ------------------------------------------


@pytest.mark.parametrize("rows", [1, 7, 64, 299])
def test_micro_batches_sum_to_the_big_batch(rows, rng):
    backend = NumpyBackend()  # a private instance: the registry's stays untouched
    model = ma.MLP(
        [3, 8, 4], ["tanh", "softmax"], "cross_entropy", backend=backend, dtype="float64", seed=3
    )
    X = rng.standard_normal((300, 3))
    y = rng.integers(0, 4, size=300)
    Xd, yd = model.prepare(X, y)
    whole_loss, whole = model.loss_and_gradients(Xd, yd)
    backend.max_batch_rows = lambda spec: rows
    split_loss, split = model.loss_and_gradients(Xd, yd)
    np.testing.assert_allclose(split_loss, whole_loss, rtol=1e-12)
    for g, w in zip(split, whole):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14)
    # and one update from them equals the big batch's
    big = model.copy()
    big.backend = NumpyBackend()
    opt_a, opt_b = ma.optim.Adam(1e-2), ma.optim.Adam(1e-2)
    model.train_step(Xd, yd, opt_a)
    big.train_step(Xd, yd, opt_b)
    for a, b in zip(model.get_weights(), big.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_base_backend_has_no_batch_limit():
    assert Backend().max_batch_rows(ma.MLP([2, 3, 1], backend="numpy").spec) is None


# -- generated CUDA sources ---------------------------------------------------------------------


def _all_sources(dtype):
    sources = []
    for act in K.ELEMENTWISE_ACTIVATIONS:
        sources += [
            K.bias_activation_source(act, dtype),
            K.colsum_source(act, dtype),
            K.output_gradient_source("squared_error", act, dtype),
        ]
    sources += [
        K.bias_softmax_source(dtype),
        K.output_gradient_source("binary_cross_entropy", "sigmoid", dtype),
        K.softmax_cross_entropy_source(dtype),
        K.sum_segments_source(dtype),
        K.adam_source((8, 4, 12, 3, 3, 1), dtype),
        K.adam_source((5,), dtype),
        *(K.sgd_source((8, 4, 12), dtype, v) for v in ("plain", "momentum", "nesterov")),
        *_table_sources(dtype),
        K.fused_train_source(
            (2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", dtype
        ),
        K.fused_train_source((3, 5, 4), ("tanh", "softmax"), "cross_entropy", dtype),
        K.fused_train_source((3, 5, 2), ("leaky_relu", "sigmoid"), "squared_error", dtype),
        K.fused_forward_source((2, 4, 3, 1), ("relu", "relu", "sigmoid"), dtype),
    ]
    return sources


def _table_sources(dtype):
    """Every rule of the optimizer table: one launch, or a layer-wise rule's two passes."""
    from mlp_accel.ops.optimizers import OPTIMIZER_ROWS

    sources = []
    for name, row in OPTIMIZER_ROWS.items():
        if row.layerwise:
            sources += [K.table_first_source(name, (8, 4), dtype)]
            sources += [K.table_second_source(name, (8, 4), dtype)]
        else:
            sources.append(K.table_update_source(name, (8, 4, 12), dtype))
    return sources


def test_kernel_sources_compile_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    for dtype in ("float32", "float64"):
        sources = _all_sources(dtype)
        pre = K.preamble(dtype)
        assert all(src.startswith(pre) for src, _ in sources)
        names = [name for _, name in sources]
        assert len(set(names)) == len(names)
        unit = pre + "".join(src[len(pre) :] for src, _ in sources)
        path = tmp_path / f"kernels_{dtype}.cu"
        path.write_text(unit)
        proc = subprocess.run(
            [nvcc, "-arch=sm_80", "-cubin", "-o", str(tmp_path / f"{dtype}.cubin"), str(path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]


def test_fused_kernel_is_offered_only_for_small_supported_networks():
    ok = K.fused_supported
    assert ok((2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert ok((3, 5, 4), ("tanh", "softmax"), "cross_entropy", "float64")
    assert not ok((3, 33, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert not ok((3, 5, 4), ("tanh", "softmax"), "squared_error", "float32")
    assert not ok((2, 4, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float16")
    # 16*16 + 16 + 16*16 + 16 + ... parameters: the per-thread accumulators would not fit
    assert not ok((16, 16, 16, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")


# -- the backend on a GPU, or emulated on the CPU -----------------------------------------------


@pytest.fixture(params=["emulated", "gpu"])
def cupy_backend(request, monkeypatch):
    """A started cupy backend: the real one on a GPU, or the same code on the CPU emulator."""
    if request.param == "gpu":
        pytest.importorskip("cupy")
        try:
            return get_backend("cupy")
        except BackendUnavailableError as exc:
            pytest.skip(str(exc))
    if not emulator.available():
        pytest.skip("no C++ compiler for the CUDA emulator")
    fake_cupy.install(monkeypatch)
    return _new_cupy_backend(device=0)


def _is_gpu(backend):
    return backend._cp.ndarray is not np.ndarray


def _n_rows(backend):
    # The emulator runs one std::thread per CUDA thread: keep its batches small, yet bigger
    # than one 256-thread block so the multi-block reductions run.
    return 4099 if _is_gpu(backend) else 300


# (layers, activations, loss): fused-kernel networks first, then the layer-by-layer hooks.
NETWORKS = [
    ([2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"),
    ([3, 5, 4], ["tanh", "softmax"], "cross_entropy"),
    ([3, 6, 2], ["leaky_relu", "tanh"], "squared_error"),
    ([3, 40, 5], ["relu", "softmax"], "cross_entropy"),
    ([4, 36, 33, 2], ["sigmoid", "tanh", "sigmoid"], "binary_cross_entropy"),
    ([5, 40, 3], ["leaky_relu", "identity"], "squared_error"),
    ([3, 40, 3], ["relu", "sigmoid"], "squared_error"),
    ([2, 34, 70], ["relu", "softmax"], "cross_entropy"),
]
NETWORK_IDS = ["-".join(map(str, n[0])) + "-" + n[2] for n in NETWORKS]
TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}


def _data(layers, loss, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, layers[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, layers[-1], size=n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, layers[-1]))
    else:
        y = rng.standard_normal((n, layers[-1]))
    return X, y


def _pair(backend, layers, acts, loss, dtype, n, init="normal"):
    """The same model on NumPy float64 (reference) and on ``backend``, with device data."""
    ref = ma.MLP(layers, acts, loss, backend="numpy", dtype="float64", seed=7, init=init)
    model = ma.MLP(layers, acts, loss, backend=backend, dtype=dtype, seed=7, init=init)
    Xn, yn = ref.prepare(*_data(layers, loss, n))
    return ref, model, (Xn, yn), (backend.asarray(Xn, dtype), backend.asarray(yn, dtype))


def _close(backend, got, want, dtype, what):
    got = backend.to_numpy(got)
    tol = TOL[dtype]
    scale = max(float(np.max(np.abs(want))), 1e-30)
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("network", NETWORKS, ids=NETWORK_IDS)
def test_forward_gradients_and_steps_match_numpy(cupy_backend, network, dtype, monkeypatch):
    layers, acts, loss = network
    n = _n_rows(cupy_backend)
    if dtype == "float64":
        _split_reductions(cupy_backend, monkeypatch)  # float32 keeps the one-pass reductions
    ref, model, (Xn, yn), (Xd, yd) = _pair(cupy_backend, layers, acts, loss, dtype, n)
    expect_fused = K.fused_supported(tuple(layers), tuple(acts), loss, dtype)
    assert (model._fused_network() is not None) == expect_fused

    _close(cupy_backend, model.forward_device(Xd), ref.forward_device(Xn), dtype, "forward")
    want_loss, want_grads = ref.loss_and_gradients(Xn, yn)
    got_loss, got_grads = model.loss_and_gradients(Xd, yd)
    _close(cupy_backend, got_loss, np.asarray(want_loss), dtype, "loss")
    names = [f"{'Wb'[k % 2]}{k // 2 + 1}" for k in range(len(want_grads))]
    for name, g, w in zip(names, got_grads, want_grads):
        assert tuple(g.shape) == w.shape, name
        _close(cupy_backend, g, w, dtype, f"gradient {name}")

    # Two steps of each optimizer: the second exercises Adam's bias correction at t = 2.
    for make in (
        lambda: ma.optim.Adam(1e-2),
        lambda: ma.optim.SGD(0.1, momentum=0.9, nesterov=True),
        lambda: ma.optim.SGD(0.1, momentum=0.5),
        lambda: ma.optim.SGD(0.1),
    ):
        opt_ref, opt = make(), make()
        m_ref, m = ref.copy(), model.copy()
        for _ in range(2):
            loss_ref = m_ref.train_step(Xn, yn, opt_ref)
            loss_got = m.train_step(Xd, yd, opt)
        _close(cupy_backend, loss_got, np.asarray(loss_ref), dtype, f"{opt!r} loss")
        for k, (p, w) in enumerate(zip(m.params, m_ref.params)):
            _close(cupy_backend, p, w, dtype, f"{opt!r} parameter {k}")


@pytest.mark.parametrize("network", NETWORKS[:3], ids=NETWORK_IDS[:3])
def test_fused_network_equals_the_layer_by_layer_path(cupy_backend, network):
    layers, acts, loss = network
    _, model, _, (Xd, yd) = _pair(cupy_backend, layers, acts, loss, "float64", 300)
    assert model._fused_network() is not None
    fused_loss, fused = model.loss_and_gradients(Xd, yd, denom=1000.0)
    fused_out = model.forward_device(Xd)
    model._fused, model._fused_checked = None, True  # force the generic layer loop
    loss, generic = model.loss_and_gradients(Xd, yd, denom=1000.0)
    to_np = cupy_backend.to_numpy
    _close(cupy_backend, fused_loss, to_np(loss), "float64", "loss")
    _close(cupy_backend, fused_out, to_np(model.forward_device(Xd)), "float64", "forward")
    for f, g in zip(fused, generic):
        _close(cupy_backend, f, to_np(g), "float64", "gradient")


def _split_reductions(backend, monkeypatch):
    """Make every reduction take its two-launch path (partial sums, then their sum)."""
    monkeypatch.setattr(backend, "_one_chunk_rows", 0)
    monkeypatch.setattr(backend, "_one_block_elements", 0)


@pytest.mark.parametrize("split", [False, True], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("act", [*K.ELEMENTWISE_ACTIVATIONS, "softmax"])
def test_hooks_match_the_generic_hooks(cupy_backend, act, split, rng, monkeypatch):
    """Each fused hook against base.Backend's generic code on the same device arrays."""
    be = cupy_backend
    if split:
        _split_reductions(be, monkeypatch)
    act_fn = get_activation(act)
    rows, n_in, n_out = 200, 7, 37  # 37 columns: a partial 32-wide column tile
    a_prev = be.asarray(rng.standard_normal((rows, n_in)), "float64")
    W = be.asarray(rng.standard_normal((n_in, n_out)), "float64")
    b = be.asarray(rng.standard_normal(n_out), "float64")
    z, a = be.dense_forward(a_prev, W, b, act_fn)
    z_ref, a_ref = Backend.dense_forward(be, a_prev, W, b, act_fn)
    _close(be, z, be.to_numpy(z_ref), "float64", "z")
    _close(be, a, be.to_numpy(a_ref), "float64", "a")
    grad = be.asarray(rng.standard_normal((rows, n_out)), "float64")
    for need in (True, False):
        got = be.dense_backward(grad, z, a, a_prev, W, act_fn, need)
        want = Backend.dense_backward(be, grad, z, a, a_prev, W, act_fn, need)
        for name, g, w in zip(("dW", "db", "da_prev"), got, want):
            if w is None:
                assert g is None
            else:
                _close(be, g, be.to_numpy(w), "float64", f"{act} {name}")
    got = be.dense_backward(grad, z, a, a_prev, W, IDENTITY, True)
    want = Backend.dense_backward(be, grad, z, a, a_prev, W, IDENTITY, True)
    for g, w in zip(got, want):
        _close(be, g, be.to_numpy(w), "float64", "identity backward")


@pytest.mark.parametrize(
    "loss, act",
    [
        ("binary_cross_entropy", "sigmoid"),
        ("cross_entropy", "softmax"),
        *(("squared_error", a) for a in K.ELEMENTWISE_ACTIVATIONS),
    ],
)
@pytest.mark.parametrize("split", [False, True], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_output_loss_gradient_matches_generic(
    cupy_backend, loss, act, dtype, split, rng, monkeypatch
):
    be = cupy_backend
    if split:
        _split_reductions(be, monkeypatch)
    act_fn = get_activation(act)
    loss_fn = get_loss(loss)
    rows, cols = 700, 3
    z = be.asarray(4 * rng.standard_normal((rows, cols)), dtype)
    yhat = act_fn.forward(z, xp=be.xp)
    if loss == "cross_entropy":
        y = be.asarray(np.eye(cols)[rng.integers(0, cols, rows)], dtype)
    else:
        y = be.asarray(rng.integers(0, 2, (rows, cols)), dtype)
    got = be.output_loss_gradient(z, yhat, y, loss_fn, act_fn, 123.0)
    want = Backend.output_loss_gradient(be, z, yhat, y, loss_fn, act_fn, 123.0)
    assert got[0].shape == ()
    _close(be, got[0], be.to_numpy(want[0]), dtype, "loss")
    _close(be, got[1], be.to_numpy(want[1]), dtype, "dz")


def test_micro_batches_on_the_device(cupy_backend):
    layers, acts, loss = [3, 40, 5], ["relu", "softmax"], "cross_entropy"
    _, model, _, (Xd, yd) = _pair(cupy_backend, layers, acts, loss, "float64", 300)
    assert cupy_backend.max_batch_rows(model.spec) >= 1
    whole_loss, whole = model.loss_and_gradients(Xd, yd)
    cupy_backend._max_rows_override = 64
    try:
        split_loss, split = model.loss_and_gradients(Xd, yd)
    finally:
        cupy_backend._max_rows_override = None
    to_np = cupy_backend.to_numpy
    _close(cupy_backend, split_loss, to_np(whole_loss), "float64", "loss")
    for s, w in zip(split, whole):
        _close(cupy_backend, s, to_np(w), "float64", "gradient")


def test_fused_networks_need_no_micro_batches(cupy_backend):
    spec = ma.MLP([2, 4, 3, 1], backend=cupy_backend).spec
    assert cupy_backend.max_batch_rows(spec) is None


@pytest.mark.parametrize("network", [NETWORKS[0], NETWORKS[3]], ids=["fused", "layers"])
def test_training_steps_stay_on_the_device(cupy_backend, network, monkeypatch):
    layers, acts, loss = network
    _, model, _, (Xd, yd) = _pair(cupy_backend, layers, acts, loss, "float32", 300)
    opt = ma.optim.Adam(1e-3)
    model.train_step(Xd, yd, opt)

    def no_transfer(*args, **kwargs):
        raise AssertionError("a training step moved data between host and device")

    for name in ("to_numpy", "asarray", "index_array", "synchronize"):
        monkeypatch.setattr(cupy_backend, name, no_transfer)
    params = model.params
    for _ in range(3):
        loss_sum = model.train_step(Xd, yd, opt)
    assert cupy_backend.is_device_array(loss_sum)
    assert all(p is q for p, q in zip(model.params, params)), "parameters updated in place"


def test_predict_returns_numpy(cupy_backend):
    model = ma.MLP([2, 4, 3, 1], backend=cupy_backend, seed=0)
    X = np.random.default_rng(0).standard_normal((50, 2))
    out = model.predict(cupy_backend.asarray(X, "float32"))
    assert type(out) is np.ndarray and out.shape == (50,)
    assert type(model.get_weights()[0]) is np.ndarray


def test_describe_names_the_gpu(cupy_backend):
    info = cupy_backend.describe()
    for key in ("gpu", "memory", "cuda runtime", "cuda driver", "cupy", "tf32"):
        assert info[key], key
    assert info["tf32"] in ("on", "off")


def test_warmup_compiles_a_step(cupy_backend):
    spec = ma.MLP([3, 40, 5], ["relu", "softmax"], backend=cupy_backend).spec
    cupy_backend.warmup(spec)


class _Stream:
    """A CUDA stream on the CPU: a queue of operations that run in order, when something
    needs them (a synchronized or awaited event), or as soon as queued if ``eager``.

    Copies read their pinned source when they run, as the GPU's do, so a schedule that runs
    copies late shows a source refilled too early, and one that runs them early shows a
    device buffer overwritten before the step that reads it has run.
    """

    def __init__(self, eager: bool = False) -> None:
        self.ops: list = []
        self.done = 0
        self.eager = eager

    def enqueue(self, op) -> None:
        self.ops.append(op)
        if self.eager:
            self.run(len(self.ops))

    def run(self, upto: int) -> None:
        while self.done < upto:
            self.done += 1
            self.ops[self.done - 1]()

    def record(self):
        upto = len(self.ops)
        return types.SimpleNamespace(synchronize=lambda: self.run(upto))

    def wait_event(self, event) -> None:
        self.enqueue(event.synchronize)


class _DeviceArray(np.ndarray):
    def set(self, host, stream):
        stream.enqueue(lambda: np.copyto(self, host))


def _streaming_cupy(compute: _Stream, copies_early: bool):
    cuda = types.SimpleNamespace(
        Stream=lambda non_blocking: _Stream(eager=copies_early),
        get_current_stream=lambda: compute,
        alloc_pinned_memory=bytearray,
    )
    empty = lambda shape, dtype: np.full(shape, np.nan, dtype).view(_DeviceArray)  # noqa: E731
    return types.SimpleNamespace(cuda=cuda, empty=empty)


@pytest.mark.parametrize("copies_early", [False, True], ids=["copies-late", "copies-early"])
@pytest.mark.parametrize("rows", [[5, 7, 3, 7, 2], [4], [], [3, 3, 3]], ids=str)
def test_streamed_batches_arrive_whole_and_in_order(rows, copies_early, rng):
    """The double-buffered copy of host batches (CupyBackend.stream_to_device): each step,
    queued on the compute stream, reads its own batch while the buffers grow, shrink and
    alternate, whichever order the two streams' work runs in."""
    from mlp_accel.backends.cupy.staging import stream_batches

    batches = [(rng.standard_normal((n, 3)), rng.standard_normal((n, 2))) for n in rows]
    compute = _Stream()
    read: list = []
    cp = _streaming_cupy(compute, copies_early)
    for X, y in stream_batches(cp, iter(batches), "float64"):
        compute.enqueue(lambda X=X, y=y: read.append((X.copy(), y.copy())))  # the step
    compute.run(len(compute.ops))
    assert len(read) == len(batches)
    for (X, y), (X_want, y_want) in zip(read, batches):
        np.testing.assert_array_equal(np.asarray(X), X_want)
        np.testing.assert_array_equal(np.asarray(y), y_want)


# -- GPU only ------------------------------------------------------------------------------------


@pytest.fixture
def gpu_backend():
    pytest.importorskip("cupy")
    try:
        return get_backend("cupy")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


def test_gpu_tf32_is_off_by_default(gpu_backend):
    from mlp_accel.backends.cupy.device import tf32_active

    if os.environ.get("MLP_ACCEL_TF32", "").strip().lower() in ("1", "true", "yes", "on"):
        pytest.skip("MLP_ACCEL_TF32 asks for TF32")
    assert gpu_backend.tf32 is False
    assert tf32_active() in (False, None)
    assert gpu_backend.describe()["tf32"] == "off"


@pytest.mark.parametrize("network", [NETWORKS[0], NETWORKS[3]], ids=["fused", "layers"])
def test_gpu_steps_allocate_no_new_device_memory(gpu_backend, network):
    import cupy

    layers, acts, loss = network
    _, model, _, (Xd, yd) = _pair(gpu_backend, layers, acts, loss, "float32", 20000)
    opt = ma.optim.Adam(1e-3)
    pool = cupy.get_default_memory_pool()
    for _ in range(3):
        model.train_step(Xd, yd, opt)
    gpu_backend.synchronize()
    used, total = pool.used_bytes(), pool.total_bytes()
    for _ in range(20):
        model.train_step(Xd, yd, opt)
    gpu_backend.synchronize()
    assert pool.total_bytes() == total, "a step allocated new device memory"
    assert pool.used_bytes() == used, "a step left device memory in use"


def test_gpu_fit_and_predict_end_to_end(gpu_backend):
    X, y = load_dataset("circles", seed=0)[:2]
    model = ma.MLP([2, 4, 3, 1], ["relu", "relu", "sigmoid"], backend="cupy", seed=0)
    history = ma.fit(model, X, y, epochs=300, optimizer=ma.optim.Adam(0.03))
    assert history["loss"][-1] < history["loss"][0]
    assert np.mean(model.predict(X) == y) > 0.8
