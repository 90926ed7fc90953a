"""ONNX export: the graph onnxruntime runs gives what our ``predict`` and ``predict_proba`` give.

Every built-in activation, registered and per-model ones (log1p and expm1 where a naive
rendering loses every digit), each loss's outputs, float32 and float64, the estimators, and a
model trained by ``mlp-accel train`` on raw CSV rows. The export reads a model's weights, so
its graph does not depend on the backend the model lives on: one test holds that on numpy and
numba; the rest compare with NumPy's forward, the reference every backend is held to.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.cli import main
from mlp_accel.ops.table import ACTIVATION_ROWS

onnx = pytest.importorskip("onnx", reason="ONNX export needs pip install 'mlp-accel[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the export is run with onnxruntime ('.[onnx]')")

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}
DTYPES = ["float32", "float64"]
BUILTIN_HIDDEN = sorted(
    n for n, r in ACTIVATION_ROWS.items() if r.builtin and r.elementwise and not r.output_only
)


def _run(proto, X):
    """onnxruntime's outputs of ``proto`` for ``X``, by output name."""
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def _close(got, want, dtype):
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, **TOL[dtype])


def _data(n_in, dtype, n=64, scale=3.0):
    return np.random.default_rng(7).normal(scale=scale, size=(n, n_in)).astype(dtype)


# -- activations ----------------------------------------------------------------------------------
def test_every_builtin_activation_is_covered():
    assert {"relu", "gelu", "silu", "elu", "softplus", "exp", "tanh", "sigmoid"} <= set(
        BUILTIN_HIDDEN
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", BUILTIN_HIDDEN)
def test_builtin_activations_in_hidden_layers(activation, dtype):
    model = ma.MLP(
        [3, 8, 8, 2], [activation, activation, "identity"], backend="numpy", dtype=dtype, seed=3
    )
    X = _data(3, dtype, scale=1.0 if activation == "exp" else 3.0)
    out = _run(model.to_onnx(), X)
    _close(out["prediction"], model.predict(X), dtype)


def _wrap(activation, dtype, **kw):
    """A 1-1-1 network whose output is ``activation(x)`` exactly (weights 1, biases 0)."""
    one, zero = np.ones((1, 1)), np.zeros(1)
    return ma.MLP(
        [1, 1, 1],
        [activation, "identity"],
        backend="numpy",
        dtype=dtype,
        weights=[one, zero, one, zero],
        **kw,
    )


# Inputs where log(1 + x) or exp(x) - 1 would lose every digit (z = -40: softplus is 4e-18;
# z = -1e-10: elu is -1e-10), and the ordinary range around them.
REGIMES = [
    float(v) for v in "-700 -80 -40 -20 -1 -1e-5 -1e-10 -1e-30 0 1e-10 1e-5 1 20 40 80".split()
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["softplus", "elu", "gelu", "silu", "sigmoid", "tanh"])
def test_activations_keep_their_accuracy_at_extremes(activation, dtype):
    z = np.array(REGIMES, dtype=dtype).reshape(-1, 1)
    model = _wrap(activation, dtype)
    with np.errstate(all="ignore"):
        want = model.predict(z)
    _close(_run(model.to_onnx(), z)["prediction"], want, dtype)


def test_a_registered_activation_with_log1p_keeps_its_tail():
    ma.register_activation("onnx_softplus", "log1p(exp(z))")
    for dtype in DTYPES:
        z = np.array(REGIMES[1:-1], dtype=dtype).reshape(-1, 1)  # exp(80) overflows float32
        model = _wrap("onnx_softplus", dtype)
        got = _run(model.to_onnx(), z)["prediction"]
        _close(got, model.predict(z), dtype)
        np.testing.assert_allclose(got, np.log1p(np.exp(z[:, 0])), **TOL[dtype])
        assert got[REGIMES[1:-1].index(-40.0)] > 0  # log(1 + 4e-18) would be 0


def test_a_per_model_activation_with_expm1_keeps_small_values():
    table = {"my_elu": {"expr": "where(z > 0, z, expm1(z))", "derivative": None}}
    for dtype in DTYPES:
        z = np.array(REGIMES, dtype=dtype).reshape(-1, 1)
        model = _wrap("my_elu", dtype, custom_activations=table)
        got = _run(model.to_onnx(), z)["prediction"]
        _close(got, model.predict(z), dtype)
        tiny = REGIMES.index(-1e-10)
        assert got[tiny] == np.expm1(np.asarray(-1e-10, dtype))  # exp(z) - 1 is off by 8e-8


@pytest.mark.parametrize("dtype", DTYPES)
def test_log1p_expm1_erf_against_numpy_over_their_range(dtype):
    """The three functions built from other operators, within a few ulp of NumPy/SciPy, with
    NumPy's infinities and NaN (no NaN or inf leaks from the branch ``Where`` leaves out)."""
    from scipy.special import erf

    grid = np.concatenate(
        [
            np.linspace(-50, 50, 20001),
            np.logspace(-40, 2, 2001),
            -np.logspace(-40, 2, 2001),
            [0.0, -0.0, -1.0, -0.9999999, 1e30, -1e30, np.inf, -np.inf, np.nan],
        ]
    ).astype(dtype)
    for name, reference in (("log1p", np.log1p), ("expm1", np.expm1), ("erf", erf)):
        model = _wrap(
            f"onnx_fn_{name}",
            dtype,
            custom_activations={f"onnx_fn_{name}": {"expr": f"{name}(z)", "derivative": "1"}},
        )
        with np.errstate(all="ignore"):
            want = reference(grid.astype(np.float64)).astype(dtype)
        got = _run(model.to_onnx(), grid.reshape(-1, 1))["prediction"]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=name)
        ulps = np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want[finite]))
        assert ulps.max() <= 4, (name, ulps.max())


def test_naive_renderings_would_fail_these_checks():
    # Holds the tests above to regimes that matter: log(1 + x) and exp(x) - 1 lose there.
    z = np.array([[-40.0], [-1e-10]])
    table = {"naive": {"expr": "where(z < -1, log(1 + exp(z)), exp(z) - 1)", "derivative": "1"}}
    got = _run(_wrap("naive", "float64", custom_activations=table).to_onnx(), z)["prediction"]
    assert got[0] == 0.0 and abs(got[1] / np.expm1(-1e-10) - 1) > 1e-9


# -- outputs of each loss -------------------------------------------------------------------------
CASES = {
    "softmax": ([4, 8, 3], ["tanh", "softmax"], "cross_entropy"),
    "binary": ([4, 8, 1], ["relu", "sigmoid"], "binary_cross_entropy"),
    "multilabel": ([4, 8, 3], ["gelu", "sigmoid"], "binary_cross_entropy"),
    "regression": ([4, 8, 2], ["silu", "identity"], "squared_error"),
    "regression-1": ([4, 8, 1], ["elu", "identity"], "squared_error"),
    "poisson": ([4, 8, 1], ["softplus", "exp"], "poisson"),
    "sigmoid-mse": ([4, 8, 2], ["relu", "sigmoid"], "squared_error"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_loss_exports_its_outputs(case, dtype):
    layers, activations, loss = CASES[case]
    model = ma.MLP(layers, activations, loss, backend="numpy", dtype=dtype, seed=5)
    X = _data(4, dtype)
    out = _run(model.to_onnx(), X)
    if loss in ("cross_entropy", "binary_cross_entropy"):
        assert list(out) == ["label", "probabilities"]
        np.testing.assert_array_equal(out["label"], model.predict(X))
        assert out["label"].dtype == np.int64
        _close(out["probabilities"], model.predict_proba(X), dtype)
    else:
        assert list(out) == ["prediction"]
        _close(out["prediction"], model.predict(X), dtype)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_graph_reads_weights_not_the_backend(backend):
    """The same graph from a model on any backend; it agrees with that backend's predict."""
    layers, activations, loss = CASES["softmax"]
    model = ma.MLP(layers, activations, loss, backend=backend, dtype="float64", seed=5)
    reference = ma.MLP(layers, activations, loss, backend="numpy", dtype="float64", seed=5)
    proto = model.to_onnx()
    assert proto.SerializeToString() == reference.to_onnx().SerializeToString()
    X = _data(4, "float64")
    out = _run(proto, X)
    np.testing.assert_array_equal(out["label"], model.predict(X))
    _close(out["probabilities"], model.predict_proba(X), "float64")


def test_the_dtype_can_be_changed_at_export():
    model = ma.MLP([4, 8, 3], ["gelu", "softmax"], backend="numpy", dtype="float32", seed=0)
    X = _data(4, "float64")
    wide = ma.MLP(
        [4, 8, 3],
        ["gelu", "softmax"],
        backend="numpy",
        dtype="float64",
        weights=model.get_weights(),
    )
    out = _run(ma.to_onnx(model, dtype="float64"), X)
    _close(out["probabilities"], wide.predict_proba(X), "float64")
    assert ma.to_onnx(model).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


# -- preprocessing: raw features in, the user's labels out ----------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_preprocessing_is_part_of_the_graph(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=50.0, scale=10.0, size=(100, 3))
    model = ma.MLP([3, 6, 3], ["relu", "softmax"], backend="numpy", dtype=dtype, seed=1)
    model.preprocessing = ma.Preprocessing(
        x_mean=[50.0, 49.0, 51.0],
        x_scale=[10.0, 9.0, 11.0],
        classes=["a", "b", "c"],
        feature_names=["u", "v", "w"],
    )
    proto = model.to_onnx()
    out = _run(proto, X)  # float64 raw features, standardized as predict does
    assert out["label"].dtype == object and set(out["label"]) <= {"a", "b", "c"}
    np.testing.assert_array_equal(out["label"], model.predict(X))
    _close(out["probabilities"], model.predict_proba(X), dtype)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["feature_names"] == '["u", "v", "w"]'

    binary = ma.MLP([3, 6, 1], ["elu", "sigmoid"], backend="numpy", dtype=dtype, seed=2)
    binary.preprocessing = ma.Preprocessing(x_mean=[50.0] * 3, x_scale=[10.0] * 3, classes=[0, 9])
    out = _run(binary.to_onnx(), X)
    assert out["label"].dtype == np.int64 and out["label"].shape == (100,)
    np.testing.assert_array_equal(out["label"], binary.predict(X))
    assert set(out["label"]) == {0, 9}
    _close(out["probabilities"], binary.predict_proba(X), dtype)

    regression = ma.MLP([3, 6, 2], ["tanh", "identity"], backend="numpy", dtype=dtype, seed=1)
    regression.preprocessing = ma.Preprocessing(
        x_mean=[50.0] * 3, x_scale=[10.0] * 3, y_mean=[100.0, -3.0], y_scale=[20.0, 0.5]
    )
    out = _run(regression.to_onnx(), X)
    _close(out["prediction"], regression.predict(X), dtype)  # rtol: in the target's units


# -- estimators -----------------------------------------------------------------------------------
def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
        return estimator.fit(X, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_classifiers_export_labels_and_probabilities(dtype):
    from mlp_accel.sklearn import MLPClassifier

    X = _data(5, dtype, n=120, scale=1.0)
    targets = {
        "multiclass": np.array(["cat", "dog", "eel"])[np.argmax(X[:, :3], axis=1)],
        "binary": np.where(X[:, 0] > 0, 7, -2),
        "multilabel": (X[:, :3] > 0).astype(int),
    }
    for kind, y in targets.items():
        clf = _fit(
            MLPClassifier(
                (8,), activation="tanh", max_iter=30, random_state=0, backend="numpy", dtype=dtype
            ),
            X,
            y,
        )
        out = _run(clf.to_onnx(), X)
        np.testing.assert_array_equal(out["label"], clf.predict(X), err_msg=kind)
        _close(out["probabilities"], clf.predict_proba(X), dtype)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressors_export_predictions(loss):
    from mlp_accel.sklearn import MLPRegressor

    for dtype in DTYPES:
        X = _data(4, dtype, n=80, scale=1.0)
        for y in (np.abs(X[:, 0]) + 1, np.abs(X[:, :2]) * 3):
            reg = _fit(
                MLPRegressor(loss, (8,), max_iter=20, random_state=0, backend="numpy", dtype=dtype),
                X,
                y,
            )
            _close(_run(ma.to_onnx(reg), X)["prediction"], reg.predict(X), dtype)


def test_an_estimator_with_a_registered_activation_exports():
    from mlp_accel.sklearn import MLPRegressor

    ma.register_activation("onnx_mish", "z * tanh(log1p(exp(z)))")
    X = _data(3, "float64", n=50, scale=1.0)
    reg = _fit(
        MLPRegressor(
            hidden_layer_sizes=(6,),
            activation="onnx_mish",
            max_iter=10,
            random_state=0,
            backend="numpy",
        ),
        X,
        X[:, 0],
    )
    _close(_run(reg.to_onnx(), X)["prediction"], reg.predict(X), "float64")


def test_an_unfitted_estimator_is_refused():
    from sklearn.exceptions import NotFittedError

    from mlp_accel.sklearn import MLPClassifier

    with pytest.raises(NotFittedError):
        ma.to_onnx(MLPClassifier())


# -- files and arguments --------------------------------------------------------------------------
def test_the_file_is_the_returned_model(tmp_path):
    model = ma.MLP([2, 4, 1], ["relu", "sigmoid"], backend="numpy", seed=0)
    path = tmp_path / "m.onnx"
    proto = model.to_onnx(path)
    assert path.read_bytes() == proto.SerializeToString()
    assert onnx.load(str(path)) == proto
    assert [p.version for p in proto.opset_import] == [ma.export.DEFAULT_OPSET]
    assert proto.ir_version == 8


@pytest.mark.parametrize("opset", [ma.export.MIN_OPSET, 18, 20])
def test_the_opset_can_be_chosen(opset):
    model = ma.MLP([3, 5, 2], ["gelu", "softmax"], backend="numpy", dtype="float64", seed=0)
    proto = model.to_onnx(opset=opset)
    assert [p.version for p in proto.opset_import] == [opset]
    X = _data(3, "float64")
    _close(_run(proto, X)["probabilities"], model.predict_proba(X), "float64")


def test_bad_arguments_are_named():
    model = ma.MLP([2, 4, 1], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="opset must be from 13 to"):
        model.to_onnx(opset=12)
    with pytest.raises(TypeError, match="opset must be an integer"):
        model.to_onnx(opset="17")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        model.to_onnx(dtype="float16")
    with pytest.raises(TypeError, match=r"takes an mlp_accel\.MLP or a fitted"):
        ma.to_onnx(object())


def test_a_missing_onnx_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    model = ma.MLP([2, 4, 1], backend="numpy", seed=0)
    with pytest.raises(ImportError, match=r"pip install 'mlp-accel\[onnx\]'"):
        model.to_onnx()
    path = tmp_path / "m.npz"
    model.save(path)
    assert main(["export", "--model", str(path), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mlp-accel[onnx]'" in err[0]


def test_importing_the_package_does_not_import_onnx():
    code = "import mlp_accel, sys; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


# -- the command ----------------------------------------------------------------------------------
def _csv_rows(tmp_path, rng):
    """A headed CSV of raw features (not standardized) with text labels, and its features."""
    X = rng.normal(loc=[50.0, -3.0, 1000.0], scale=[10.0, 0.5, 200.0], size=(300, 3))
    score = (X[:, 0] - 50) / 10 + 2 * (X[:, 1] + 3) + (X[:, 2] - 1000) / 200
    labels = np.select([score < -1, score < 1], ["low", "mid"], "high")
    path = tmp_path / "rows.csv"
    body = "\n".join(",".join([*(repr(float(v)) for v in row), lab]) for row, lab in zip(X, labels))
    path.write_text("width,depth,height,grade\n" + body + "\n")
    return path, X


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_cli_trained_model_gives_predicts_labels_on_raw_rows(tmp_path, capsys, dtype):
    csv, X = _csv_rows(tmp_path, np.random.default_rng(1))
    model, exported = tmp_path / "m.npz", tmp_path / "m.onnx"
    train = [
        "train",
        "--data",
        str(csv),
        "--layers",
        "3,16,3",
        "--activations",
        "mish,softmax",
        "--define-activation",
        "mish=z * tanh(log1p(exp(z)))",
        "--epochs",
        "60",
        "--no-progress",
        "--backend",
        "numpy",
        "--dtype",
        dtype,
        "--save",
        str(model),
    ]
    assert main(train) == 0
    assert main(["export", "--model", str(model), "--onnx", str(exported)]) == 0
    assert "outputs label, probabilities" in capsys.readouterr().out
    for flag, column in (([], "prediction"), (["--proba"], None)):
        out = tmp_path / f"p{len(flag)}.csv"
        args = ["predict", "--model", str(model), "--data", str(csv), "--out", str(out)]
        assert main([*args, "--backend", "numpy", *flag]) == 0
        printed = np.loadtxt(out, delimiter=",", skiprows=1, dtype=str if column else float)
        got = _run(onnx.load(str(exported)), X)
        if column:
            assert len(set(printed)) == 3  # the model learned all three labels
            np.testing.assert_array_equal(got["label"], printed)  # every row
        else:
            # predict prints 6 significant digits; the unrounded values meet TOL
            np.testing.assert_allclose(got["probabilities"], printed, rtol=1e-5, atol=1e-6)
            _close(got["probabilities"], ma.load(model).predict_proba(X), dtype)


def test_a_cli_trained_regression_exports_in_the_targets_units(tmp_path, capsys):
    path, exported = tmp_path / "d.npz", tmp_path / "d.onnx"
    train = [
        "train",
        "--dataset",
        "diabetes",
        "--epochs",
        "20",
        "--no-progress",
        "--backend",
        "numpy",
        "--save",
        str(path),
    ]
    assert main(train) == 0
    assert (
        main(
            [
                "export",
                "--model",
                str(path),
                "--onnx",
                str(exported),
                "--dtype",
                "float64",
                "--opset",
                "18",
            ]
        )
        == 0
    )
    from sklearn.datasets import load_diabetes

    X, _ = load_diabetes(return_X_y=True)
    model = ma.load(path)
    got = _run(onnx.load(str(exported)), X)["prediction"]
    wide = ma.MLP(
        model.layers,
        model.activations,
        model.loss,
        backend="numpy",
        dtype="float64",
        weights=model.get_weights(),
        preprocessing=model.preprocessing,
    )
    _close(got, wide.predict(X), "float64")
    assert 50 < got.mean() < 300  # the target's units


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "missing.npz", "--onnx", "m.onnx"], "missing.npz"),
        (["--model", "{model}", "--onnx", "m.onnx", "--opset", "99"], "opset must be from 13"),
        (["--model", "{model}", "--onnx", "no/such/dir/m.onnx"], "does not exist"),
        (["--model", "{csv}", "--onnx", "m.onnx"], "csv"),
    ],
)
def test_export_errors_are_one_line(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    ma.MLP([2, 3, 1], backend="numpy", seed=0).save(tmp_path / "m.npz")
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    args = [a.format(model=tmp_path / "m.npz", csv=tmp_path / "x.csv") for a in args]
    assert main(["export", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlp-accel: error:") and expected in err[0], err
    assert not (tmp_path / "m.onnx").exists()


def test_export_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", "m.npz", "--onnx", "m.onnx", "--dtype", "float16"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", "m.npz"])
    assert info.value.code == 2


def test_export_never_writes_over_its_model_or_into_a_directory(tmp_path, capsys):
    # Before the fix, --onnx naming the --model file replaced the model with the ONNX bytes.
    model = tmp_path / "m.npz"
    ma.MLP([2, 3, 1], backend="numpy", seed=0).save(model)
    before = model.read_bytes()
    for onnx_path, expected in (
        (model, "--model and --onnx name the same file"),
        (tmp_path / "." / "m.npz", "--model and --onnx name the same file"),
        (tmp_path, "is a directory"),
    ):
        assert main(["export", "--model", str(model), "--onnx", str(onnx_path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert model.read_bytes() == before and sorted(tmp_path.iterdir()) == [model]
