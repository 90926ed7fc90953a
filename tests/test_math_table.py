"""The math table: the expression checker, derivatives, every built-in and a registered
activation on every backend, the Poisson loss, sigmoid tails and the overflow rule."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.ops import expr as E
from mlp_accel.ops.table import ACTIVATION_ROWS, LOSS_ROWS, activation_row

from .helpers import finite_difference_grads, make_data

# -- the expression checker ----------------------------------------------------------------
ACCEPTED = [
    "z",
    "-z",
    "+z",
    "2",
    "1.5e-3 * z",
    "z ** 2 + z / 3 - 1",
    "exp(z) + expm1(z) + log(z) + log1p(z) + tanh(z) + erf(z) + sqrt(z) + abs(z)",
    "where(z > 0, z, 0.01 * z)",
    "where(z <= -1, -1, minimum(maximum(z, -1), 1))",
    "where(z != 0, z, 1)",
    "z * tanh(log1p(exp(z)))",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_checker_accepts_the_language(text):
    tree = E.parse(text)
    assert E.names_in(tree) <= {"z"}


REFUSED = [
    ("__import__('os')", "__import__"),
    ("z.real", ".real"),
    ("(lambda: 1)()", "call of"),
    ("lambda z: z", "lambda"),
    ("sin(z)", "'sin'"),
    ("np.exp(z)", "call of"),
    ("x + 1", "'x'"),
    ("a * z", "'a'"),
    ("z if z > 0 else 0", "z if z > 0 else 0"),
    ("z[0]", "z[0]"),
    ("'text'", "'text'"),
    ("True", "True"),
    ("1j * z", "1j"),
    ("z > 0", "comparison"),
    ("where(z, 1, 0)", "condition"),
    ("where(0 < z < 1, 1, 0)", "chained"),
    ("exp(z, 2)", "argument"),
    ("exp(x=z)", "keyword"),
    ("[z]", "[z]"),
    ("z // 2", "//"),
    ("z % 2", "%"),
    ("z @ z", "@"),
    ("not z", "not z"),
    ("z and 1", "z and 1"),
    ("", "empty"),
    ("z +", "syntax"),
    ("exp(*z)", "argument"),
    ("z" + " + z" * 1000, "longer"),
    ("1e999 * z", "non-finite"),
]


@pytest.mark.parametrize(("text", "token"), REFUSED)
def test_checker_refuses_everything_else_naming_the_token(text, token):
    with pytest.raises(ValueError) as info:
        E.parse(text)
    assert token in str(info.value), str(info.value)


def test_checker_refuses_non_strings():
    with pytest.raises(TypeError, match="string"):
        E.parse(3.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "z ** 3 - 2 * z",
        "exp(-z * z / 2) / (1 + z * z)",
        "log1p(exp(z)) * tanh(z)",
        "erf(z) + sqrt(z * z + 1) + expm1(z / 3)",
        "where(z > 0.3, z ** 2, -z) + maximum(z, 0.1) - minimum(z, -0.2) + abs(z - 0.05)",
        "log(z * z + 2) ** 1.5 / (z * z + 1)",
        "(z * z + 1) ** (z / 4)",
    ],
)
def test_symbolic_derivative_matches_finite_differences(text):
    tree = E.parse(text)
    der = E.diff(tree)
    z = np.linspace(-2.95, 2.95, 41)  # avoids the kinks at 0.3, 0.1, -0.2, 0.05
    h = 1e-6
    numeric = (E.evaluate(tree, {"z": z + h}, np) - E.evaluate(tree, {"z": z - h}, np)) / (2 * h)
    np.testing.assert_allclose(E.evaluate(der, {"z": z}, np), numeric, rtol=1e-6, atol=1e-7)


def test_renderers_cover_the_language():
    tree = E.parse("where(z >= 0, z ** 2, exp(minimum(z, 0))) + erf(z) ** 0.5")
    py = E.to_python(tree, {"z": "v"}, repr)
    # the vectorizable helpers of the generated module, never a scalar libm call
    assert "_erf(v)" in py and "_exp(_minimum(v, 0.0))" in py and "math." not in py
    assert "(v * v)" in py and " if " in py
    cu = E.to_cuda(tree, {"z": "v"})
    assert "ERF(v)" in cu and "POW(" in cu and "nan_min" in cu and "?" in cu


# -- every built-in, gradients on every backend ---------------------------------------------
ELEMENTWISE = [n for n, row in ACTIVATION_ROWS.items() if row.elementwise and row.builtin]


def _check_gradients(model, X, y):
    _, analytic = model.gradients(X, y)
    numeric = finite_difference_grads(model, X, y)
    for a, n in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("width", [5, 70], ids=["fused", "per-layer"])
@pytest.mark.parametrize("act", ELEMENTWISE)
def test_every_builtin_hidden_activation_gradient(backend_name, act, width, rng):
    # width 70 is wider than the fused Numba kernel takes: the per-layer kernels run
    widths = [3, width, 2]
    X, y = make_data(rng, 6, widths, "squared_error")
    if act == "exp":  # exp of exp: keep the loss small enough for finite differences
        X *= 0.1
    model = ma.MLP(
        widths, [act, act], "squared_error", backend=backend_name, dtype="float64", seed=5
    )
    _check_gradients(model, X, y)


@pytest.mark.parametrize("width", [4, 70], ids=["fused", "per-layer"])
def test_poisson_loss_gradient(backend_name, width, rng):
    widths = [3, width, 2]
    X = rng.normal(size=(6, 3))
    y = rng.poisson(2.0, size=(6, 2)).astype(float)
    model = ma.MLP(widths, ["gelu", "exp"], "poisson", backend=backend_name, dtype="float64")
    _check_gradients(model, X, y)


def test_poisson_defaults_and_value():
    model = ma.MLP([2, 3, 1], loss="poisson", backend="numpy", dtype="float64", seed=0)
    assert model.activations[-1] == "exp"
    assert ma.MLP([2, 3, 1], activations=["relu", "exp"], backend="numpy").loss == "poisson"
    with pytest.raises(ValueError, match="'exp' output"):
        ma.MLP([2, 3, 1], ["relu", "identity"], "poisson", backend="numpy")
    # half the Poisson deviance, as scikit-learn's poisson_loss
    from sklearn.neural_network._base import poisson_loss

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    y = rng.poisson(1.5, size=(20, 1)).astype(float)
    out = np.asarray(model.forward(X))
    assert model.evaluate(X, y) == pytest.approx(poisson_loss(y, out), rel=1e-12)


# -- a registered activation ------------------------------------------------------------------
def test_register_activation_refuses_bad_input():
    with pytest.raises(ValueError, match="__import__"):
        ma.register_activation("evil", "__import__('os').system('true')")
    with pytest.raises(ValueError, match="'sin'"):
        ma.register_activation("wave", "sin(z)")
    with pytest.raises(ValueError, match="'x'"):
        ma.register_activation("wave", "z", derivative="x")
    with pytest.raises(ValueError, match="built-in"):
        ma.register_activation("relu", "maximum(z, 0)")
    with pytest.raises(ValueError, match="letters"):
        ma.register_activation("my act", "z")
    with pytest.raises(TypeError, match="string"):
        ma.register_activation("fn_act", lambda z: z)  # type: ignore[arg-type]
    assert "evil" not in ACTIVATION_ROWS and "wave" not in ACTIVATION_ROWS
    ma.register_activation("twice_test", "2 * z")
    ma.register_activation("twice_test", "2 * z")  # the same again is fine
    with pytest.raises(ValueError, match="already registered"):
        ma.register_activation("twice_test", "3 * z")


MISH = "z * tanh(maximum(z, 0) + log1p(exp(-abs(z))))"  # z tanh(softplus(z))


@pytest.fixture
def mish() -> str:
    ma.register_activation("mish_test", MISH)
    return "mish_test"


def test_registered_derivative_is_symbolic(mish):
    row = activation_row(mish)
    assert not row.builtin and row.derivative is None and row.derivative_tree is not None


@pytest.mark.parametrize("width", [5, 70], ids=["fused", "per-layer"])
def test_registered_activation_gradients(backend_name, mish, width, rng):
    widths = [3, width, 2]
    X, y = make_data(rng, 6, widths, "cross_entropy")
    model = ma.MLP(
        widths, [mish, "softmax"], "cross_entropy", backend=backend_name, dtype="float64", seed=2
    )
    _check_gradients(model, X, y)
    # and on the output layer, through the chain rule of squared error
    X, y = make_data(rng, 6, widths, "squared_error")
    model = ma.MLP(widths, ["tanh", mish], backend=backend_name, dtype="float64", seed=2)
    _check_gradients(model, X, y)


def test_registered_activation_trains_like_numpy(backend_name, mish, rng):
    X, y = make_data(rng, 64, [3, 8, 1], "binary_cross_entropy")
    ref = ma.MLP([3, 8, 1], [mish, "sigmoid"], backend="numpy", dtype="float64", seed=1)
    other = ma.MLP([3, 8, 1], [mish, "sigmoid"], backend=backend_name, dtype="float64", seed=1)
    ma.fit(ref, X, y, epochs=3, batch_size=16, shuffle=False)
    ma.fit(other, X, y, epochs=3, batch_size=16, shuffle=False)
    for a, b in zip(ref.get_weights(), other.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_saved_registered_activation_loads_in_a_fresh_process(tmp_path, mish):
    model = ma.MLP([2, 4, 1], [mish, "sigmoid"], backend="numpy", dtype="float64", seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    X = np.linspace(-2, 2, 10).reshape(5, 2)
    expected = model.predict_proba(X)
    code = (
        "import sys, numpy as np, mlp_accel as ma\n"
        f"m = ma.load({str(path)!r}, backend='numpy')\n"
        "X = np.linspace(-2, 2, 10).reshape(5, 2)\n"
        "np.save(sys.argv[1], m.predict_proba(X))\n"
    )
    out = tmp_path / "p.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12)


def test_load_rechecks_the_stored_expression(tmp_path, mish):
    import json

    model = ma.MLP([2, 4, 1], [mish, "sigmoid"], backend="numpy", seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["activations"][0] = "evil_loaded"
    meta["custom_activations"] = {"evil_loaded": {"expr": "__import__('os').getcwd()"}}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="__import__"):
        ma.load(path, backend="numpy")
    assert "evil_loaded" not in ACTIVATION_ROWS


def test_registered_activation_in_the_estimators(mish):
    from mlp_accel.sklearn import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(
        hidden_layer_sizes=(5,), activation=mish, max_iter=5, backend="numpy", random_state=0
    )
    clf.fit(X, y)
    assert clf.predict(X).shape == (40,)
    for act in ("gelu", "silu", "elu", "softplus"):
        MLPRegressor(hidden_layer_sizes=(4,), activation=act, max_iter=3, backend="numpy").fit(
            X, X[:, 0]
        )
    with pytest.raises(ValueError, match="activation"):
        MLPRegressor(activation="no_such_activation").fit(X, X[:, 0])


# -- scikit-learn's Poisson scenario ------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_mlp_vs_poisson_glm_equivalent(seed):
    """scikit-learn's test_mlp_vs_poisson_glm_equivalent, on our regressor."""
    from sklearn.linear_model import PoissonRegressor

    from mlp_accel.sklearn import MLPRegressor

    n = 100
    rng = np.random.default_rng(seed)
    X = np.linspace(0, 1, n)
    y = rng.poisson(np.exp(X + 1))
    X = X.reshape(n, -1)
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    mlp = MLPRegressor(
        loss="poisson",
        hidden_layer_sizes=(1,),
        activation="identity",
        alpha=0,
        solver="lbfgs",
        tol=1e-7,
        random_state=np.random.RandomState(seed + 1),
        backend="numpy",
        dtype="float64",
    ).fit(X, y)
    assert mlp.out_activation_ == "exp"
    np.testing.assert_allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)
    mlp = MLPRegressor(
        loss="squared_error",
        hidden_layer_sizes=(1,),
        activation="identity",
        alpha=0,
        solver="lbfgs",
        tol=1e-7,
        random_state=np.random.RandomState(seed + 1),
        backend="numpy",
        dtype="float64",
    ).fit(X, y)
    assert not np.allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)


def test_poisson_regressor_refuses_negative_targets():
    from mlp_accel.sklearn import MLPRegressor

    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson", backend="numpy").fit(np.ones((4, 1)), [1.0, -1.0, 0.0, 2.0])


# -- numerics that must agree across backends ------------------------------------------------------
def _tail_model(backend: str, width: int) -> ma.MLP:
    """A model whose output logit is exactly the first input: z = x (identity hidden layer)."""
    model = ma.MLP([1, width, 1], ["identity", "sigmoid"], backend=backend, dtype="float64")
    W1 = np.zeros((1, width))
    W1[0, 0] = 1.0
    W2 = np.zeros((width, 1))
    W2[0, 0] = 1.0
    model.set_weights([W1, np.zeros(width), W2, np.zeros(1)])
    return model


@pytest.mark.parametrize("width", [3, 70], ids=["fused", "per-layer"])
def test_sigmoid_tails_are_exact_on_every_backend(backend_name, width):
    z = np.array([-745.0, -700.0, -100.0, -40.0, -37.5, -20.0, 0.0, 20.0, 40.0, 800.0])
    p = _tail_model(backend_name, width).predict_proba(z[:, None]).ravel()
    exact = np.array([1.0 / (1.0 + math.exp(-v)) if v > -700 else math.exp(v) for v in z])
    np.testing.assert_allclose(p, exact, rtol=1e-13, atol=0)
    assert p[3] > 0  # 0.5 * (1 + tanh(z / 2)) rounded this to exactly 0


@pytest.mark.parametrize("width", [4, 70], ids=["fused", "per-layer"])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "gelu", "silu"])
def test_an_overflowing_hidden_layer_follows_one_rule(backend_name, act, width):
    """The rule: IEEE arithmetic as NumPy does it (inf - inf and inf * 0 are NaN) and NaN
    propagates through every activation and loss, so an overflow never looks like a
    confident answer on one backend and NaN on another."""
    model = ma.MLP([2, width, 1], [act, "sigmoid"], backend=backend_name, dtype="float32")
    half = width // 2
    W1 = np.full((2, width), 1e30, np.float32)  # finite float32 weights
    W2 = np.full((width, 1), 1e30, np.float32)
    W2[half:] = -1e30
    model.set_weights([W1, np.zeros(width), W2, np.zeros(1)])
    # row 0: the hidden layer overflows to +inf; row 1: finite; row 2: overflows to -inf.
    # (Finite rows that cancel terms of 1e29 differ by rounding between BLAS and the fused
    # kernels' FMAs, as any two summation orders do: not part of the rule.)
    X = np.array([[1e10, 1e10], [0.0, 0.0], [-1e10, -1e10]], dtype=np.float32)
    with np.errstate(all="ignore"):
        got = model.predict_proba(X).ravel()
        expected = _numpy_copy(model).predict_proba(X).ravel()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    if act in ("relu", "gelu", "silu"):  # f(inf) = inf: inf - inf at the output
        assert np.isnan(got[0]), got


def _numpy_copy(model: ma.MLP) -> ma.MLP:
    return model if model.backend.name == "numpy" else model.to("numpy")


def test_every_loss_and_activation_has_a_row():
    assert {"gelu", "silu", "elu", "softplus", "exp"} <= set(ACTIVATION_ROWS)
    assert "poisson" in LOSS_ROWS
    for row in LOSS_ROWS.values():
        assert row.matched in ACTIVATION_ROWS


# -- CUDA, through the CPU emulator of tests/_cuda_emulator.py (and on a GPU where one is) ------
@pytest.fixture(params=["emulated", "gpu"])
def cuda_backend(request, monkeypatch):
    """The cupy backend: on a GPU, or the same code with its CUDA C run by the emulator."""
    from mlp_accel.backends import BackendUnavailableError, get_backend

    from . import _cuda_emulator as emulator
    from . import _fake_cupy as fake_cupy

    if request.param == "gpu":
        pytest.importorskip("cupy")
        try:
            return get_backend("cupy")
        except BackendUnavailableError as exc:
            pytest.skip(str(exc))
    if not emulator.available():
        pytest.skip("no C++ compiler for the CUDA emulator")
    fake_cupy.install(monkeypatch)
    from mlp_accel.backends.cupy.backend import CupyBackend

    return CupyBackend(device=0)


def _device_gradients(backend, widths, acts, loss, X, y):
    model = ma.MLP(widths, acts, loss, backend=backend, dtype="float64", seed=4)
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=4)
    return model, model.gradients(X, y), ref.gradients(X, y)


@pytest.mark.parametrize(
    ("widths", "acts", "loss"),
    [
        ([3, 5, 2], ["mish_test", "exp"], "poisson"),  # the fused whole-network kernel
        ([3, 40, 2], ["mish_test", "mish_test"], "squared_error"),  # the layer kernels
        ([3, 40, 2], ["gelu", "exp"], "poisson"),
        ([3, 6, 2], ["silu", "softplus"], "squared_error"),
        ([3, 40, 3], ["elu", "softmax"], "cross_entropy"),
    ],
    ids=["fused-registered", "layers-registered", "layers-poisson", "fused-silu", "layers-elu"],
)
def test_cuda_kernels_of_new_and_registered_activations(cuda_backend, mish, widths, acts, loss):
    rng = np.random.default_rng(3)
    n = 40
    X = rng.normal(size=(n, widths[0]))
    if loss == "poisson":
        y = rng.poisson(1.0, size=(n, widths[-1])).astype(float)
    else:
        y = make_data(rng, n, widths, loss)[1]
        if loss == "cross_entropy":  # one-hot rows: the emulator's arrays pass as device ones
            y = np.eye(widths[-1])[y]
    model, (loss_dev, grads_dev), (loss_ref, grads_ref) = _device_gradients(
        cuda_backend, widths, acts, loss, X, y
    )
    fused = model.backend.fused_network(model.spec) is not None
    assert fused == (widths[1] <= 32)
    assert loss_dev == pytest.approx(loss_ref, rel=1e-10)
    for g, r in zip(grads_dev, grads_ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)
    if fused:  # and against finite differences directly (small: the emulator is slow)
        _check_gradients(model, X[:6], y[:6])


@pytest.mark.parametrize("width", [3, 40], ids=["fused", "per-layer"])
def test_cuda_sigmoid_tails_are_exact(cuda_backend, width):
    z = np.array([-745.0, -100.0, -40.0, 0.0, 40.0, 800.0])
    p = _tail_model(cuda_backend, width).predict_proba(z[:, None]).ravel()
    exact = np.array([math.exp(v) if v < -700 else 1.0 / (1.0 + math.exp(-v)) for v in z])
    np.testing.assert_allclose(p, exact, rtol=1e-13, atol=0)


def test_cli_trains_poisson_counts_with_a_new_activation(tmp_path, capsys):
    from mlp_accel.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = rng.poisson(np.exp(0.5 * X[:, 0] + 0.2))
    csv = tmp_path / "counts.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,y", comments="")
    model = tmp_path / "m.npz"
    args = ["train", "--data", str(csv), "--task", "regression", "--loss", "poisson"]
    args += ["--layers", "2,8,1", "--activations", "gelu,exp", "--epochs", "200"]
    args += ["--no-progress", "--backend", "numpy", "--save", str(model)]
    assert main(args) == 0
    out = capsys.readouterr().out
    r2 = float(out.split("R2")[1].split()[0].strip(":= "))
    assert r2 > 0.2, out
    loaded = ma.load(model, backend="numpy")
    assert loaded.activations == ("gelu", "exp") and loaded.loss == "poisson"
