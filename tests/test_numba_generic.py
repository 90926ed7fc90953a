"""The generic fused kernel of narrow networks: widths, depth and activations as data.

Checked against NumPy float64 (and finite differences) on several depths, widths and
activations, a registered one included, with every loss; batches of one row, of a block and
a row, and of odd sizes; one compiled kernel for several shapes; and which tasks compile it.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma

from .helpers import finite_difference_grads, make_data

numba = pytest.importorskip("numba")

from mlp_accel.backends.base import NetworkSpec  # noqa: E402
from mlp_accel.backends.numba import generic as _numba_generic  # noqa: E402
from mlp_accel.backends.numba import tasks as C  # noqa: E402
from mlp_accel.backends.numba.networks import GenericNetwork  # noqa: E402

ma.register_activation("generic_test_mish", "z * tanh(log1p(exp(z)))")

#: Every hidden activation of the table and a registered one, in one key (one compile).
HIDDEN = [
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "gelu",
    "silu",
    "elu",
    "softplus",
    "identity",
    "generic_test_mish",
]
DEEP = ([3, 5, 4, 6, 3, 4, 5, 4, 3, 4, 3, 2], [*HIDDEN, "sigmoid"], "binary_cross_entropy")
#: The same activation set in other orders, with other widths: the same compiled kernel.
OTHER = ([4, 9, 2, 9, 1, 6, 3, 7, 2, 5, 8, 1], [*HIDDEN[::-1], "sigmoid"], DEEP[2])
WIDE = ([5, 64, 64, 3, 64, 2, 64, 64, 4, 64, 64, 1], [*HIDDEN[3:], *HIDDEN[:3], "sigmoid"], DEEP[2])

#: One network per output (loss, activation) pair: the matched pairs and the chain rule.
OUTPUTS = [
    ([4, 7, 3], ["relu", "softmax"], "cross_entropy"),
    ([13, 32, 3], ["relu", "softmax"], "cross_entropy"),
    ([3, 6, 2], ["relu", "tanh"], "squared_error"),
    ([3, 6, 5, 3], ["relu", "relu", "softmax"], "squared_error"),
    ([3, 6, 2], ["relu", "exp"], "poisson"),
]

RTOL = 1e-9


def _data(rng, n, widths, loss):
    if loss == "poisson":
        X = rng.normal(size=(n, widths[0]))
        return X, rng.poisson(1.5, size=(n, widths[-1])).astype(float)
    return make_data(rng, n, widths, loss)


def _network(widths, acts, loss, dtype="float64"):
    spec = NetworkSpec(tuple(widths), tuple(acts), loss, dtype)
    module = _numba_generic.load_module(_numba_generic.generic_key(spec))
    return GenericNetwork(spec, module)


def _close(actual, desired, rtol=RTOL):
    # atol scaled to the values: entries that cancel to ~0 carry only absolute rounding error
    scale = max(1.0, float(np.max(np.abs(desired))))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * 1e-3 * scale)


def _check_against_numpy(net, widths, acts, loss, rng, sizes, rtol=RTOL):
    dtype = net.spec.dtype
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=5)
    params = [np.asarray(w, dtype) for w in ref.get_weights()]
    ref.set_weights(params)  # the same (possibly float32-rounded) weights
    for n in sizes:
        X, y = _data(rng, n, widths, loss)
        Xr, yr = ref.prepare(X.astype(dtype).astype("float64"), y)
        loss_ref, grads_ref = ref.loss_and_gradients(Xr, yr)
        Xd, yd = Xr.astype(dtype), yr.astype(dtype)
        loss_sum, grads = net.loss_and_gradients(params, Xd, yd, float(n))
        assert loss_sum == pytest.approx(float(loss_ref), rel=rtol), n
        assert [g.shape for g in grads] == [p.shape for p in params]
        for g, g_ref in zip(grads, grads_ref, strict=True):
            assert g.dtype == np.dtype(dtype)
            _close(g, g_ref, rtol)
        _close(net.forward(params, Xd), ref.forward(Xr), rtol)


@pytest.mark.parametrize("case", [DEEP, OTHER, WIDE], ids=["deep", "other", "wide"])
def test_every_activation_and_depth_matches_numpy_float64(case, rng):
    widths, acts, loss = case
    net = _network(widths, acts, loss)
    # one row; a block (64 lanes in float64) and one more; odd sizes
    _check_against_numpy(net, widths, acts, loss, rng, (1, 7, 64, 65, 203))


@pytest.mark.parametrize("case", OUTPUTS, ids=lambda c: f"{c[1][-1]}-{c[2]}-{c[0][-1]}")
def test_every_output_and_loss_matches_numpy_float64(case, rng):
    widths, acts, loss = case
    _check_against_numpy(_network(widths, acts, loss), widths, acts, loss, rng, (1, 3, 37, 130))


def test_gradients_match_finite_differences(rng):
    widths, acts, loss = [3, 4, 3, 2], ["generic_test_mish", "tanh", "sigmoid"], DEEP[2]
    net = _network(widths, acts, loss)
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=2)
    X, y = _data(rng, 11, widths, loss)
    Xd, yd = ref.prepare(X, y)
    _, grads = net.loss_and_gradients(ref.get_weights(), Xd, yd, 11.0)
    for g, g_fd in zip(grads, finite_difference_grads(ref, X, y), strict=True):
        np.testing.assert_allclose(g, g_fd, rtol=1e-5, atol=1e-8)


def test_float32_tutorial_network_matches_numpy_float64(rng):
    widths, acts, loss = [2, 4, 3, 1], ["relu", "relu", "sigmoid"], DEEP[2]
    net = _network(widths, acts, loss, "float32")
    _check_against_numpy(net, widths, acts, loss, rng, (1, 127, 128, 129, 1000), rtol=2e-4)


def test_one_compiled_kernel_serves_every_shape_of_its_key(rng):
    nets = [_network(*case) for case in (DEEP, OTHER, WIDE)]
    module = nets[0]._module
    assert all(net._module is module for net in nets)
    for net, (widths, acts, loss) in zip(nets, (DEEP, OTHER, WIDE), strict=True):
        X, y = _data(rng, 9, widths, loss)
        model = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=0)
        Xd, yd = model.prepare(X, y)
        net.loss_and_gradients(model.get_weights(), Xd, yd, 9.0)
        net.forward(model.get_weights(), Xd)
    for kernel in (module.train, module.forward):
        assert len(kernel.signatures) == 1, kernel.signatures
    # compiled here (once) or only linked into the entry points loaded from the disk cache
    assert len(module.train_chunk.signatures) <= 1
    # the key is the activation set, not the order, widths or depth
    keys = {_numba_generic.generic_key(net.spec) for net in nets}
    assert len(keys) == 1
    assert "generic_test_mish" in next(iter(keys))[1]


def test_generated_source_is_deterministic_and_bad_keys_are_refused():
    key = ("float64", ("identity", "relu", "softmax"), "cross_entropy", "softmax")
    assert _numba_generic.generate_source(key) == _numba_generic.generate_source(key)
    with pytest.raises(ValueError, match="float32 and float64"):
        _numba_generic.generate_source(("float16", key[1], key[2], key[3]))
    with pytest.raises(ValueError, match="requires"):
        _numba_generic.generate_source(("float64", key[1], "cross_entropy", "relu"))
    with pytest.raises(ValueError, match="not among"):
        _numba_generic.generate_source(("float64", ("identity",), "squared_error", "tanh"))
    with pytest.raises(ValueError, match="unknown activation"):
        _numba_generic.generate_source(("float64", ("nope",), "squared_error", "nope"))


def test_tasks_for_each_tier():
    spec = NetworkSpec((3, 6, 2), ("relu", "tanh"), "squared_error", "float64")
    assert [t["kind"] for t in C.tasks_for(spec, "all")] == ["layers", "generic", "fused"]
    assert [t["kind"] for t in C.tasks_for(spec, "generic")] == ["layers", "generic"]
    assert [t["kind"] for t in C.tasks_for(spec, "specialized")] == ["layers", "fused"]
    assert [t["kind"] for t in C.tasks_for(spec, "layers")] == ["layers"]
    # without evaluation, a network tier needs only the optimizer kernels beside its own
    optim_only = C.tasks_for(spec, "generic", evaluate=False)[0]
    assert optim_only["activations"] == [] and optim_only["optim"]
    lane_block = NetworkSpec((13, 32, 3), ("relu", "softmax"), "cross_entropy", "float64")
    assert not C.specialization_pays(lane_block)  # the generic kernel is as fast
    assert [t["kind"] for t in C.tasks_for(lane_block, "all")] == ["layers", "generic"]
    wide = NetworkSpec((3, 65, 2), ("relu", "tanh"), "squared_error", "float64")
    assert [t["kind"] for t in C.tasks_for(wide, "generic")] == ["layers"]
    task = C.generic_task(
        NetworkSpec((2, 3, 1), ("generic_test_mish", "sigmoid"), DEEP[2], "float32")
    )
    assert task["activations"] == ["generic_test_mish", "identity", "sigmoid"]


def test_compile_tasks_says_what_it_compiles_only_when_it_compiles(tmp_path, monkeypatch):
    import io

    spec = NetworkSpec((2, 3, 1), ("tanh", "sigmoid"), DEEP[2], "float64")
    tasks = C.tasks_for(spec, "generic", evaluate=False)
    out = io.StringIO()
    C.compile_tasks(tasks, out)  # compiled here, or loaded from the disk cache
    assert all(C.cached(t) for t in tasks)
    again = io.StringIO()
    assert C.compile_tasks(tasks, again) == 0.0 and again.getvalue() == ""
    if out.getvalue():
        assert "mlp_accel: compiling" in out.getvalue() and "compiled in" in out.getvalue()
