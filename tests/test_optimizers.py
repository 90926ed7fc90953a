"""The optimizers of the optimizer table (issue 24): AdamW, RMSprop, Adagrad, LARS, LAMB.

Closed-form small cases on every backend (NumPy, Numba, and CuPy through the CUDA emulator),
NumPy against Numba over 50-step trajectories, the same bits on any thread count, the state's
round trip, lookup by name, refused hyperparameters, the table's own checks and the compile
tasks. The comparison with PyTorch and optax is ``benchmarks/optimizer_reference.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.ops.optimizers import OPTIMIZER_ROWS, OptimizerRow

from . import _cuda_emulator as emulator
from . import _fake_cupy as fake_cupy
from .helpers import make_data

W0 = np.array([[1.0, -2.0]])
B0 = np.array([0.5])
GW = np.array([[0.5, 1.0]])
GB = np.array([0.25])


@pytest.fixture(params=["numpy", "numba", "cupy-emulated", "cupy-gpu"])
def any_backend(request, monkeypatch):
    """A backend whose optimizer hooks run: NumPy's in-place code, Numba's kernels, or the
    CUDA kernels on the CPU emulator or a GPU (skipped without one)."""
    if request.param == "cupy-gpu":
        pytest.importorskip("cupy")
        try:
            return ma.get_backend("cupy")
        except ma.BackendUnavailableError as exc:
            pytest.skip(str(exc))
    if request.param == "cupy-emulated":
        if not emulator.available():
            pytest.skip("no C++ compiler for the CUDA emulator")
        fake_cupy.install(monkeypatch)
        from mlp_accel.backends.cupy.backend import CupyBackend

        return CupyBackend(device=0)
    return ma.get_backend(request.param)


def _steps(backend, opt, params, grads, steps):
    """``steps`` updates of copies of ``params`` by the same ``grads``; NumPy results."""
    ps = [backend.asarray(p.copy(), "float64") for p in params]
    for _ in range(steps):
        ps = opt.step(ps, [backend.asarray(g.copy(), "float64") for g in grads], backend)
    return [backend.to_numpy(p) for p in ps]


def _adamw():
    # decay 1 - 0.1 * 0.5 = 0.95 on the weights; m/c1 = g and sqrt(v/c2) = |g| at step 1
    w = [0.95 - 0.1 * 0.5 / (0.5 + 1e-8), -1.9 - 0.1 * 1.0 / (1.0 + 1e-8)]
    return ma.optim.AdamW(0.1, weight_decay=0.5), 1, [[w], [0.5 - 0.1 * 0.25 / (0.25 + 1e-8)]]


def _adamw_biases():
    b = 0.5 * 0.95 - 0.1 * 0.25 / (0.25 + 1e-8)
    return ma.optim.AdamW(0.1, weight_decay=0.5, decay_biases=True), 1, [None, [b]]


def _rmsprop():
    # square_avg = 0.1 g^2, then 0.19 g^2
    def two(p, g):
        p1 = p - 0.01 * g / (math.sqrt(0.1) * abs(g) + 1e-8)
        return p1 - 0.01 * g / (math.sqrt(0.19) * abs(g) + 1e-8)

    expected = [[[two(1.0, 0.5), two(-2.0, 1.0)]], [two(0.5, 0.25)]]
    return ma.optim.RMSprop(0.01, rho=0.9), 2, expected


def _rmsprop_centered_momentum():
    # grad_avg = 0.1 g then 0.19 g: avg = sqrt(0.09) |g|, then sqrt(0.19 - 0.0361) |g|
    def two(p, g):
        buf1 = g / (0.3 * abs(g) + 1e-8)
        buf2 = 0.5 * buf1 + g / (math.sqrt(0.1539) * abs(g) + 1e-8)
        return p - 0.01 * buf1 - 0.01 * buf2

    expected = [[[two(1.0, 0.5), two(-2.0, 1.0)]], [two(0.5, 0.25)]]
    return ma.optim.RMSprop(0.01, rho=0.9, momentum=0.5, centered=True), 2, expected


def _adagrad():
    # weights: gw = g + 0.5 w = [1, 0]; sum = 0.1 + gw^2. Biases: no decay.
    w = [1.0 - 0.1 * 1.0 / (math.sqrt(1.1) + 1e-10), -2.0]
    b = 0.5 - 0.1 * 0.25 / (math.sqrt(0.1625) + 1e-10)
    opt = ma.optim.Adagrad(0.1, weight_decay=0.5, initial_accumulator_value=0.1)
    return opt, 1, [[w], [b]]


def _lamb():
    # u = g / (|g| + eps); the ratio ||p|| / ||u|| makes the bias's step lr * |b| exactly
    u = GW / (np.abs(GW) + 1e-6)
    w = W0 - 0.1 * (math.sqrt(5.0) / float(np.sqrt(np.sum(u * u)))) * u
    return ma.optim.LAMB(0.1), 1, [w.tolist(), [0.45]]


def _lamb_decay():
    u = GW / (np.abs(GW) + 1e-6) + 0.1 * W0
    w = W0 - 0.1 * (math.sqrt(5.0) / float(np.sqrt(np.sum(u * u)))) * u
    return ma.optim.LAMB(0.1, weight_decay=0.1), 1, [w.tolist(), [0.45]]


def _lars():
    # ratio 0.01 * sqrt(5) / sqrt(1.25) = 0.02 at step 1; the bias is plain momentum SGD
    w1 = W0 - 0.02 * GW
    v1 = 0.02 * GW
    ratio2 = 0.01 * float(np.sqrt(np.sum(w1 * w1))) / math.sqrt(1.25)
    w2 = w1 - (0.9 * v1 + ratio2 * GW)
    opt = ma.optim.LARS(1.0, trust_coefficient=0.01, momentum=0.9)
    return opt, 2, [w2.tolist(), [0.25 - (0.9 * 0.25 + 0.25)]]


def _lars_nesterov():
    w = W0 - (0.02 * GW + 0.9 * 0.02 * GW)
    opt = ma.optim.LARS(1.0, trust_coefficient=0.01, momentum=0.9, nesterov=True)
    return opt, 1, [w.tolist(), [0.5 - (0.25 + 0.9 * 0.25)]]


CASES = {
    "adamw": _adamw,
    "adamw_biases": _adamw_biases,
    "rmsprop": _rmsprop,
    "rmsprop_centered_momentum": _rmsprop_centered_momentum,
    "adagrad": _adagrad,
    "lamb": _lamb,
    "lamb_decay": _lamb_decay,
    "lars": _lars,
    "lars_nesterov": _lars_nesterov,
}


@pytest.mark.parametrize("case", list(CASES))
def test_closed_form_steps_on_every_backend(any_backend, case):
    opt, steps, expected = CASES[case]()
    got = _steps(any_backend, opt, [W0, B0], [GW, GB], steps)
    for g, want in zip(got, expected, strict=True):
        if want is not None:
            np.testing.assert_allclose(g, np.asarray(want).reshape(g.shape), rtol=1e-12)
    assert opt.t == steps


def test_a_zero_tensor_takes_the_ratio_one():
    """LAMB on a bias at zero: ||p|| = 0, so the step is lr * u (optax's safe ratio)."""
    opt = ma.optim.LAMB(0.1)
    got = _steps(ma.get_backend("numpy"), opt, [W0, np.zeros(1)], [GW, GB], 1)
    np.testing.assert_allclose(got[1], [-0.1 * 0.25 / (0.25 + 1e-6)], rtol=1e-15)


def test_adamw_without_decay_is_adam_bit_for_bit():
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((7, 5)), rng.standard_normal(5)]
    grads = [rng.standard_normal(p.shape) for p in params]
    backend = ma.get_backend("numpy")
    adam = _steps(backend, ma.optim.Adam(0.01), params, grads, 3)
    adamw = _steps(backend, ma.optim.AdamW(0.01, weight_decay=0.0), params, grads, 3)
    for a, b in zip(adam, adamw, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", list(OPTIMIZER_ROWS))
def test_numpys_in_place_rendering_is_the_reference_bit_for_bit(rule, dtype):
    from mlp_accel.backends.base import Backend
    from mlp_accel.backends.numpy_backend import NumpyBackend

    row = OPTIMIZER_ROWS[rule]
    rng = np.random.default_rng(4)
    shapes = [(5, 4), (4,), (4, 1), (1,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    # positive state (random scalars may still take a centered RMSprop's root below 0: NaN
    # is compared as NaN)
    state = [
        [
            ((1.0 + np.tanh(rng.standard_normal(s)) * 0.5) * (1 + 3 * (n == "square_avg"))).astype(
                dtype
            )
            for s in shapes
        ]
        for n in row.state
    ]
    scalars = tuple(rng.uniform(0.1, 0.9, len(row.scalars)).tolist())  # Python floats
    per_tensor = [tuple(rng.uniform(0.1, 0.9, len(row.tensor_scalars)).tolist()) for _ in shapes]

    def copies(arrays):
        return [a.copy() for a in arrays]

    generic = Backend()
    generic.xp = NumpyBackend.xp
    want = generic.optimizer_update(
        row, copies(params), grads, [copies(s) for s in state], scalars, per_tensor
    )
    got = NumpyBackend().optimizer_update(
        row, copies(params), grads, [copies(s) for s in state], scalars, per_tensor
    )
    flat_got = [*got[0], *(a for arrays in got[1] for a in arrays)]
    flat_want = [*want[0], *(a for arrays in want[1] for a in arrays)]
    for a, b in zip(flat_got, flat_want, strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


def test_the_host_ratio_is_ieee_float64():
    """The layer-wise ratios on the host: Python floats with NumPy's float64 rules."""
    from mlp_accel.ops import expr as E
    from mlp_accel.ops.optimizers import _host_function

    values = [0.0, 1e-300, 2.5, 4e300, float("inf"), float("nan")]
    for row in (OPTIMIZER_ROWS["lamb"], OPTIMIZER_ROWS["lars"]):
        host, ref = _host_function(row.ratio_tree), E.compile_xp(row.ratio_tree)
        for wsq in values:
            for usq in values:
                env = {name: 0.5 for name in (*row.scalars, *row.tensor_scalars)}
                env.update(wsq=wsq, usq=usq, eps=0.0, adapt=1.0)
                with np.errstate(all="ignore"):
                    want = float(ref({k: np.float64(v) for k, v in env.items()}, np))
                np.testing.assert_equal(host(env), want)
    assert _host_function(E.parse("a / b", ("a", "b")))({"a": -1.0, "b": 0.0}) == -math.inf


def test_the_cuda_kernels_match_numpy_over_many_blocks(monkeypatch):
    """Tensors of several 256-thread blocks: the layer-wise first pass sums per block, then
    the segment sums add the blocks in order."""
    if not emulator.available():
        pytest.skip("no C++ compiler for the CUDA emulator")
    fake_cupy.install(monkeypatch)
    from mlp_accel.backends.cupy.backend import CupyBackend

    gpu, ref = CupyBackend(device=0), ma.get_backend("numpy")
    rng = np.random.default_rng(1)
    params = [rng.standard_normal((30, 30)), rng.standard_normal(30), np.zeros(3)]
    grads = [rng.standard_normal(p.shape) for p in params]
    for make in (
        lambda: ma.optim.LAMB(0.01, weight_decay=0.1),
        lambda: ma.optim.LARS(0.5, nesterov=True, adapt_biases=True, weight_decay=0.1),
        lambda: ma.optim.RMSprop(0.01, centered=True, weight_decay=0.1),
    ):
        for a, b in zip(
            _steps(gpu, make(), params, grads, 2), _steps(ref, make(), params, grads, 2)
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# -- trajectories: NumPy against Numba ---------------------------------------------------------
NETWORKS = [
    ([4, 8, 3], ["tanh", "softmax"], "cross_entropy"),
    ([3, 6, 5, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"),
    ([5, 7, 2], ["gelu", "identity"], "squared_error"),
]
OPTIMIZERS = {
    "adamw": lambda wd: ma.optim.AdamW(0.01, weight_decay=wd),
    "rmsprop": lambda wd: ma.optim.RMSprop(0.005, weight_decay=wd, momentum=0.5, centered=wd > 0),
    "adagrad": lambda wd: ma.optim.Adagrad(0.05, weight_decay=wd),
    "lars": lambda wd: ma.optim.LARS(0.5, weight_decay=wd, trust_coefficient=0.01, nesterov=wd > 0),
    "lamb": lambda wd: ma.optim.LAMB(0.01, weight_decay=wd, decay_biases=wd > 0),
}


@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["no-decay", "decay"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fifty_steps_on_numba_follow_numpy(name, weight_decay):
    """50 full-batch steps in float64 agree to 1e-9 (Numba's kernels reassociate)."""
    for i, (widths, acts, loss) in enumerate(NETWORKS):
        X, y = make_data(np.random.default_rng(i), 64, widths, loss)
        weights = []
        for backend in ("numpy", "numba"):
            model = ma.MLP(widths, acts, loss, backend=backend, dtype="float64", seed=i)
            opt = OPTIMIZERS[name](weight_decay)
            ma.fit(model, X, y, epochs=50, optimizer=opt, shuffle=False, progress=False)
            assert opt.t == 50
            weights.append(model.get_weights())
        for a, b in zip(*weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_on_numba_follows_float64_numpy(name):
    widths, acts, loss = NETWORKS[0]
    X, y = make_data(np.random.default_rng(0), 64, widths, loss)
    weights = []
    for backend, dtype in (("numpy", "float64"), ("numba", "float32")):
        model = ma.MLP(widths, acts, loss, backend=backend, dtype=dtype, seed=0)
        ma.fit(model, X, y, epochs=5, optimizer=OPTIMIZERS[name](0.1), shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["lamb", "rmsprop"])
def test_the_same_bits_on_any_thread_count(name):
    widths, acts, loss = [6, 16, 3], ["relu", "softmax"], "cross_entropy"
    X, y = make_data(np.random.default_rng(0), 6000, widths, loss)
    results = []
    for count in (1, 2):
        with ma.threads(count):
            model = ma.MLP(widths, acts, loss, backend="numba", dtype="float32", seed=0)
            ma.fit(model, X, y, epochs=2, batch_size=3000, optimizer=OPTIMIZERS[name](0.1))
            results.append(model.get_weights())
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# -- state, names, validation ----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_state_round_trips_and_continues_bit_for_bit(backend, name):
    be = ma.get_backend(backend)
    rng = np.random.default_rng(2)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [rng.standard_normal(p.shape) for p in params]
    straight = OPTIMIZERS[name](0.1)
    want = _steps(be, straight, params, grads, 4)
    first = OPTIMIZERS[name](0.1)
    half = _steps(be, first, params, grads, 2)
    state = first.state_dict(be)
    again = ma.optim.get_optimizer(state["name"], **state["hyperparameters"])
    again.load_state_dict(state, be)
    assert again.t == 2 and repr(again) == repr(first)
    got = _steps(be, again, half, grads, 2)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_optimizer_by_name():
    assert set(ma.optim.OPTIMIZERS) == {
        "sgd",
        "adam",
        "adamw",
        "rmsprop",
        "adagrad",
        "lars",
        "lamb",
    }
    assert isinstance(ma.optim.get_optimizer(" LAMB "), ma.optim.LAMB)
    assert ma.optim.get_optimizer("rmsprop", momentum=0.5).update_rule == "rmsprop_momentum"
    assert ma.optim.SGD().update_rule is None and ma.optim.Adam().update_rule is None
    assert type(ma.optim.AdamW()).__module__ == "mlp_accel.optim"
    X, y = make_data(np.random.default_rng(0), 30, [2, 3, 1], "binary_cross_entropy")
    for name in ("adamw", "rmsprop", "adagrad", "lars", "lamb"):
        model = ma.MLP([2, 3, 1], backend="numpy", seed=0)
        ma.fit(model, X, y, epochs=2, optimizer=name, progress=False)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ma.optim.AdamW(weight_decay=-1), ValueError, "weight_decay must lie in"),
        (lambda: ma.optim.AdamW(beta2=1.0), ValueError, r"beta2 must lie in \[0, 1\)"),
        (lambda: ma.optim.AdamW(decay_biases="no"), TypeError, "decay_biases must be True"),
        (lambda: ma.optim.RMSprop(rho=float("nan")), ValueError, "rho must be a number"),
        (lambda: ma.optim.RMSprop(centered=1), TypeError, "centered must be True or False"),
        (lambda: ma.optim.Adagrad(eps=0), ValueError, "eps must lie in"),
        (lambda: ma.optim.Adagrad(initial_accumulator_value=-0.1), ValueError, "initial_acc"),
        (lambda: ma.optim.LARS(trust_coefficient=0), ValueError, "trust_coefficient"),
        (lambda: ma.optim.LARS(momentum=0, nesterov=True), ValueError, "needs momentum > 0"),
        (lambda: ma.optim.LAMB(lr=0), ValueError, "learning rate lr"),
        (lambda: ma.optim.get_optimizer("adadelta"), ValueError, "unknown optimizer 'adadelta'"),
    ],
)
def test_bad_hyperparameters_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_negative_square_average_in_a_checkpoint_is_refused(tmp_path):
    X, y = make_data(np.random.default_rng(0), 30, [2, 3, 1], "binary_cross_entropy")
    model = ma.MLP([2, 3, 1], backend="numpy", dtype="float64", seed=0)
    path = tmp_path / "ck.npz"
    ma.fit(model, X, y, epochs=2, optimizer=ma.optim.RMSprop(), checkpoint=path, progress=False)
    with np.load(path) as npz:
        arrays = dict(npz)
    key = next(k for k in arrays if k.endswith("square_avg1"))
    arrays[key] = -np.abs(arrays[key]) - 1.0
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"square_avg1 .*negative"):
        ma.io.load_checkpoint(path)


# -- the table and its compile tasks ---------------------------------------------------------
def test_the_table_refuses_what_kernels_would_compute_differently():
    with pytest.raises(ValueError, match="scalars alone"):
        OptimizerRow("bad", ("m",), ("lr", "wd"), (), (("m", "m"), ("p", "p - lr * wd * g")))
    with pytest.raises(ValueError, match="never writes m"):
        OptimizerRow("bad", ("m",), ("lr",), (), (("p", "p - lr * g"),))
    with pytest.raises(ValueError, match="read-only"):
        OptimizerRow("bad", (), ("lr",), (), (("g", "g * g"), ("p", "p - lr * g")))
    with pytest.raises(ValueError, match="not allowed"):
        OptimizerRow("bad", (), ("lr",), (), (("p", "p - lr * q"),))
    assert {row.layerwise for row in OPTIMIZER_ROWS.values()} == {False, True}


def test_a_fit_compiles_only_its_optimizers_kernels():
    from mlp_accel.backends.numba import tasks as T

    spec = ma.MLP([3, 70, 2], ["relu", "sigmoid"], backend="numpy").spec
    plain = T.tasks_for(spec, "layers")
    assert [t["kind"] for t in plain] == ["layers"] and plain[0]["optim"]  # SGD's and Adam's
    lamb = T.tasks_for(spec, "layers", optimizer="lamb")
    assert [t["kind"] for t in lamb] == ["layers", "optimizer"] and not lamb[0]["optim"]
    assert T.describe(lamb[1]) == "the lamb optimizer kernels (float32, once per machine)"
    narrow = ma.MLP([2, 4, 1], ["relu", "sigmoid"], backend="numpy").spec
    tasks = T.tasks_for(narrow, "generic", evaluate=False, optimizer="adamw")
    assert [t["kind"] for t in tasks] == ["generic", "optimizer"]


# -- the command ------------------------------------------------------------------------------
def _built(*argv):
    from mlp_accel.cli import build_parser
    from mlp_accel.cli._train_build import build_optimizer

    args = build_parser().parse_args(["train", *argv])
    args.lr = args.lr or 0.03
    return build_optimizer(args, 100)


def test_the_command_builds_each_optimizer_from_its_options():
    assert repr(_built("--optimizer", "sgd")) == "SGD(lr=0.03, momentum=0.9, nesterov=False)"
    lamb = _built(
        "--optimizer", "lamb", "--weight-decay", "0.01", "--decay-biases", "--eps", "1e-7"
    )
    assert (lamb.weight_decay, lamb.decay_biases, lamb.eps) == (0.01, True, 1e-7)
    rms = _built("--optimizer", "rmsprop", "--centered", "--momentum", "0.5")
    assert rms.update_rule == "rmsprop_centered_momentum"
    lars = _built("--optimizer", "lars", "--trust-coefficient", "0.02", "--nesterov")
    assert (lars.trust_coefficient, lars.nesterov, lars.momentum) == (0.02, True, 0.9)
    assert _built("--optimizer", "adamw").weight_decay == 0.01  # PyTorch's default
    assert _built("--optimizer", "adam", "--beta2", "0.99").beta2 == 0.99


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--momentum", "0.5"],
            "--momentum applies to sgd, rmsprop, lars, not to --optimizer adam",
        ),
        (["--optimizer", "sgd", "--centered"], "--centered applies to rmsprop, not to"),
        (["--optimizer", "lars", "--nesterov", "--momentum", "0"], "needs momentum > 0"),
    ],
)
def test_an_option_the_optimizer_does_not_take_is_one_line(argv, message, capsys):
    from mlp_accel.cli import main

    assert main(["train", "--epochs", "1", "--no-progress", "--backend", "numpy", *argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_the_command_trains_with_lamb(capsys):
    from mlp_accel.cli import main

    argv = ["train", "--optimizer", "lamb", "--lr", "0.05", "--weight-decay", "0.01"]
    assert main([*argv, "--epochs", "30", "--no-progress", "--backend", "numpy"]) == 0
    assert "accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--weight-decay", "-1"])
    assert "--weight-decay: must be a non-negative finite" in capsys.readouterr().err


def test_the_table_runs_on_array_api_strict():
    """The reference rendering uses the array API standard only."""
    pytest.importorskip("array_api_strict")
    from .test_array_api import StrictBackend

    strict, ref = StrictBackend(), ma.get_backend("numpy")
    rng = np.random.default_rng(3)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [rng.standard_normal(p.shape) for p in params]
    for make in OPTIMIZERS.values():
        got = _steps(strict, make(0.1), params, grads, 2)
        for a, b in zip(got, _steps(ref, make(0.1), params, grads, 2), strict=True):
            np.testing.assert_array_equal(a, b)


def test_warmup_compiles_an_optimizers_every_variant(capsys):
    from mlp_accel.cli import main

    assert main(["warmup", "--layers", "3,70,2", "--dtype", "float64", "--optimizer", "lars"]) == 0
    out = capsys.readouterr().out
    assert "the lars optimizer kernels (float64" in out
    assert "the lars_nesterov optimizer kernels (float64" in out


def test_a_state_loads_only_into_the_same_hyperparameters_and_is_copied():
    """A checkpoint's RMSprop with momentum read by a plain RMSprop would be ignored half: refused,
    naming what differs (the rate aside); the loaded arrays are the optimizer's own."""
    backend = ma.backends.get_backend("numpy")
    params = [np.ones((2, 3)), np.zeros(3)]
    saved = ma.optim.RMSprop(lr=0.1, momentum=0.9, centered=True)
    saved.step(params, [np.full((2, 3), 0.5), np.full(3, 0.5)], backend)
    state = saved.state_dict(backend)
    with pytest.raises(ValueError, match=r"centered=True \(here False\), momentum=0.9 \(here 0"):
        ma.optim.RMSprop(lr=0.1).load_state_dict(state, backend)
    other_rate = ma.optim.RMSprop(lr=0.5, momentum=0.9, centered=True)
    other_rate.load_state_dict(state, backend)  # a new rate is fine
    before = state["arrays"]["square_avg0"].copy()
    other_rate.step(params, [np.ones((2, 3)), np.ones(3)], backend)
    np.testing.assert_array_equal(state["arrays"]["square_avg0"], before)
