"""scikit-learn in and out: ``from_sklearn``, ``model_from_sklearn`` and ``to_sklearn``.

A scikit-learn MLP imported and given back predicts bit for bit as the original; ours, built
from it, predicts within 1e-12 of it in float64 on every backend; what scikit-learn's MLP
cannot express is refused with a message naming it. The given-back estimator is
scikit-learn's own class with the private state its ``fit`` sets, which differs by version:
this file runs under each supported scikit-learn (1.6 on; see docs/sklearn.md).
"""

from __future__ import annotations

import functools
import inspect
import pickle
import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import NotFittedError
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlp_accel as ma
from mlp_accel.sklearn import (
    MLPClassifier,
    MLPRegressor,
    from_sklearn,
    model_from_sklearn,
    to_sklearn,
)

#: scikit-learn's MLPRegressor has loss="poisson" (an exp output) from 1.7 on.
POISSON = "loss" in inspect.signature(SkRegressor).parameters
PROBLEMS = ["binary", "multiclass", "multilabel", "regression", "multioutput"]
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
TOL = 1e-12


def _data(problem: str, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    targets = {
        "binary": np.where(X[:, 0] + X[:, 1] > 0, "yes", "no"),
        "multiclass": np.digitize(X[:, 0] - X[:, 2], [-0.5, 0.5]) * 10,
        "multilabel": (X[:, :3] > 0).astype(int),
        "regression": X @ [1.0, -2.0, 0.5, 3.0],
        "multioutput": np.c_[X[:, 0] * X[:, 1], X[:, 2] - X[:, 3]],
        "poisson": rng.poisson(np.exp(0.5 * X[:, 0])).astype(float),
    }
    return X, targets[problem]


def _is_classification(problem: str) -> bool:
    return problem in ("binary", "multiclass", "multilabel")


@functools.cache
def _fitted_sklearn(problem: str, activation: str, dtype: str = "float64") -> object:
    X, y = _data(problem)
    if _is_classification(problem):
        est = SkClassifier(hidden_layer_sizes=(6, 5), activation=activation, random_state=0)
    else:
        loss = {"loss": "poisson"} if problem == "poisson" else {}
        est = SkRegressor(hidden_layer_sizes=(6, 5), activation=activation, random_state=0, **loss)
    est.set_params(max_iter=25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 25 epochs
        return est.fit(X.astype(dtype), y)


def _outputs(est: object, X: np.ndarray) -> np.ndarray:
    """What the estimator computes in floats: probabilities, or the predicted values."""
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _problems() -> list[str]:
    return PROBLEMS + (["poisson"] if POISSON else [])


# -- sklearn -> ours -> sklearn --------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("problem", _problems())
def test_a_round_trip_predicts_bit_for_bit(problem, activation):
    sk = _fitted_sklearn(problem, activation)
    X, _ = _data(problem)
    back = to_sklearn(from_sklearn(sk, backend="numpy"))
    assert type(back) is type(sk)
    assert np.array_equal(back.predict(X), sk.predict(X))
    assert np.array_equal(_outputs(back, X), _outputs(sk, X))
    assert back.get_params() == sk.get_params()
    for name in ("n_features_in_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_"):
        assert getattr(back, name) == getattr(sk, name), name
    assert back.loss_curve_ == sk.loss_curve_
    if _is_classification(problem):
        assert np.array_equal(back.classes_, sk.classes_)
        assert back.classes_.dtype == sk.classes_.dtype
    # pickled, as scikit-learn's estimators are shipped
    again = pickle.loads(pickle.dumps(back))
    assert np.array_equal(_outputs(again, X), _outputs(sk, X))


def test_a_float32_network_keeps_its_dtype_both_ways():
    sk = _fitted_sklearn("multiclass", "tanh", "float32")
    X, _ = _data("multiclass")
    ours = from_sklearn(sk, backend="numpy")
    assert ours.coefs_[0].dtype == np.float32
    back = to_sklearn(ours)
    assert all(c.dtype == np.float32 for c in [*back.coefs_, *back.intercepts_])
    assert np.array_equal(back.predict_proba(X), sk.predict_proba(X))
    wider = to_sklearn(from_sklearn(sk, backend="numpy", dtype="float64"))
    assert wider.coefs_[0].dtype == np.float64
    assert from_sklearn(sk, backend="numpy", dtype="float64").get_params()["dtype"] == "float64"


def test_an_lbfgs_fit_round_trips_without_a_loss_curve():
    X, y = _data("regression")
    sk = SkRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X, y)
    ours = from_sklearn(sk, backend="numpy")
    assert not hasattr(ours, "loss_curve_") and ours.loss_ == sk.loss_
    back = to_sklearn(ours)
    assert not hasattr(back, "loss_curve_")
    assert np.array_equal(back.predict(X), sk.predict(X))


# -- ours built from scikit-learn's ----------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("problem", _problems())
def test_ours_predicts_within_1e_12_of_sklearns(problem, activation, backend_name):
    sk = _fitted_sklearn(problem, activation)
    X, _ = _data(problem)
    ours = from_sklearn(sk, backend=backend_name)
    assert isinstance(ours, MLPClassifier if _is_classification(problem) else MLPRegressor)
    assert ours.backend == backend_name and ours.dtype is None
    np.testing.assert_allclose(_outputs(ours, X), _outputs(sk, X), rtol=0, atol=TOL)
    model = model_from_sklearn(sk, backend=backend_name)
    assert model.dtype == "float64" and model.backend.name == backend_name
    if _is_classification(problem):
        assert np.array_equal(ours.predict(X), sk.predict(X))
        assert np.array_equal(model.predict(X), sk.predict(X))
        proba = model.predict_proba(X)
        if problem == "binary":  # one logistic unit in both libraries
            proba = np.c_[1 - proba, proba]
        np.testing.assert_allclose(proba, sk.predict_proba(X), rtol=0, atol=TOL)
    else:
        np.testing.assert_allclose(model.predict(X), sk.predict(X), rtol=0, atol=TOL)


def test_ours_takes_sklearns_parameters_and_training_record():
    sk = SkClassifier(
        hidden_layer_sizes=(4,), solver="sgd", learning_rate="adaptive", alpha=0.01,
        early_stopping=True, random_state=np.random.RandomState(3), max_iter=30,
    )  # fmt: skip
    X, y = _data("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X, y)
    ours = from_sklearn(sk, backend="numpy")
    params = ours.get_params()
    assert params.pop("backend") == "numpy" and params.pop("dtype") is None
    assert from_sklearn(sk).backend == "auto"  # the estimators' default
    for name, value in sk.get_params().items():
        if name != "random_state":
            assert params[name] == value, name
    # a copy, as clone makes: the two do not share one generator
    assert params["random_state"] is not sk.random_state
    assert ours.validation_scores_ == sk.validation_scores_
    assert ours.best_validation_score_ == sk.best_validation_score_
    assert len(ours.validation_loss_curve_) == len(sk.validation_scores_)  # unknown: NaN
    assert ours.n_iter_ == sk.n_iter_ and ours.t_ == sk.t_ and ours.loss_ == sk.loss_


def test_both_go_on_training_from_the_converted_weights(backend_name):
    X, y = _data("multiclass")
    sk = _fitted_sklearn("multiclass", "relu")
    ours = from_sklearn(sk, backend=backend_name)
    ours.partial_fit(X, y)
    # as scikit-learn's partial_fit: n_iter_ counts this call's epoch, the curve goes on
    assert ours.n_iter_ == 1 and ours.t_ == sk.t_ + len(X)
    assert ours.loss_curve_[:-1] == sk.loss_curve_
    back = to_sklearn(ours)
    back.partial_fit(X, y)
    assert back.t_ == ours.t_ + len(X) and back.loss_curve_[:-1] == ours.loss_curve_
    reg = to_sklearn(ma.MLP([4, 3, 2], ["relu", "identity"], dtype="float64", seed=0))
    reg.partial_fit(*_data("multioutput"))
    assert reg.n_iter_ == 1 and len(reg.loss_curve_) == 1


# -- ours -> scikit-learn's ------------------------------------------------------------------
@pytest.mark.parametrize("problem", ["binary", "multiclass", "multilabel", "multioutput"])
def test_ours_given_back_is_sklearns_class(problem, backend_name):
    X, y = _data(problem)
    cls = MLPClassifier if _is_classification(problem) else MLPRegressor
    ours = cls(hidden_layer_sizes=(5,), activation="tanh", max_iter=20, random_state=0)
    ours.set_params(backend=backend_name, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y)
    sk = to_sklearn(ours)
    assert type(sk) is (SkClassifier if _is_classification(problem) else SkRegressor)
    np.testing.assert_allclose(_outputs(sk, X), _outputs(ours, X), rtol=0, atol=TOL)
    if _is_classification(problem):
        assert np.array_equal(sk.predict(X), ours.predict(X))
    expected = {k: v for k, v in ours.get_params().items() if k not in ("backend", "dtype")}
    if not POISSON:
        expected.pop("loss", None)  # scikit-learn 1.6's regressor has no loss parameter
    assert sk.get_params() == expected
    assert sk.score(X, y) == pytest.approx(ours.score(X, y), abs=1e-12)
    assert not hasattr(sk, "validation_loss_curve_")  # ours only


@pytest.mark.parametrize("problem", ["binary", "multiclass", "multilabel", "regression"])
def test_a_model_given_back_predicts_as_the_model(problem, backend_name):
    X, _ = _data(problem)
    output, loss, n_out = {
        "binary": ("sigmoid", "binary_cross_entropy", 1),
        "multiclass": ("softmax", "cross_entropy", 3),
        "multilabel": ("sigmoid", "binary_cross_entropy", 3),
        "regression": ("identity", "squared_error", 1),
    }[problem]
    model = ma.MLP(
        [4, 6, 5, n_out], ["sigmoid", "sigmoid", output], loss,
        backend=backend_name, dtype="float64", seed=0,
    )  # fmt: skip
    sk = to_sklearn(model)
    assert sk.activation == "logistic" and sk.hidden_layer_sizes == (6, 5)
    if _is_classification(problem):
        proba = model.predict_proba(X)
        if n_out == 1:
            proba = np.c_[1 - proba, proba]
        np.testing.assert_allclose(sk.predict_proba(X), proba, rtol=0, atol=TOL)
        assert np.array_equal(sk.predict(X), model.predict(X))
        assert np.array_equal(sk.classes_, np.arange(max(n_out, 2)))
    else:
        np.testing.assert_allclose(sk.predict(X), model.predict(X), rtol=0, atol=TOL)
    assert np.array_equal(to_sklearn(model_from_sklearn(sk)).predict(X), sk.predict(X))


def test_a_network_without_hidden_layers_converts_both_ways():
    X, _ = _data("multiclass")
    model = ma.MLP([4, 3], ["softmax"], dtype="float64", seed=0)
    sk = to_sklearn(model)
    assert sk.hidden_layer_sizes == () and sk.n_layers_ == 2
    np.testing.assert_allclose(sk.predict_proba(X), model.predict_proba(X), rtol=0, atol=TOL)
    back = to_sklearn(from_sklearn(sk, backend="numpy"))
    assert np.array_equal(back.predict_proba(X), sk.predict_proba(X))


def test_two_softmax_units_become_one_logistic_unit(backend_name):
    X, _ = _data("binary")
    model = ma.MLP([4, 5, 2], ["relu", "softmax"], backend=backend_name, dtype="float64", seed=1)
    sk = to_sklearn(model)
    assert sk.out_activation_ == "logistic" and sk.n_outputs_ == 1
    assert sk.coefs_[-1].shape == (5, 1)
    np.testing.assert_allclose(sk.predict_proba(X), model.predict_proba(X), rtol=0, atol=TOL)
    assert np.array_equal(sk.predict(X), model.predict(X))


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_a_models_preprocessing_is_folded_into_its_weights(backend_name):
    rng = np.random.default_rng(5)
    X = rng.normal(loc=[10.0, -3.0, 0.0, 200.0], scale=[2.0, 0.1, 1.0, 30.0], size=(50, 4))
    edge = ma.Preprocessing(
        x_mean=X.mean(0), x_scale=X.std(0), classes=["ant", "bee", "cat"],
        feature_names=["a", "b", "c", "d"],
    )  # fmt: skip
    model = ma.MLP([4, 5, 3], ["relu", "softmax"], backend=backend_name, dtype="float64", seed=0)
    model.preprocessing = edge
    sk = to_sklearn(model)
    assert list(sk.classes_) == ["ant", "bee", "cat"]
    assert list(sk.feature_names_in_) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(sk.predict_proba(X), model.predict_proba(X), rtol=0, atol=TOL)
    assert np.array_equal(sk.predict(X), model.predict(X))
    reg = ma.MLP([4, 5, 2], ["tanh", "identity"], backend=backend_name, dtype="float64", seed=0)
    reg.preprocessing = ma.Preprocessing(
        x_mean=X.mean(0), x_scale=X.std(0), y_mean=[100.0, -5.0], y_scale=[20.0, 0.5]
    )
    np.testing.assert_allclose(to_sklearn(reg).predict(X), reg.predict(X), rtol=TOL, atol=TOL)
    # a float32 model's fold is computed, and kept, in float64
    model32 = ma.MLP([4, 5, 3], ["relu", "softmax"], weights=model.get_weights(), seed=0)
    model32.preprocessing = edge
    sk32 = to_sklearn(model32)
    assert sk32.coefs_[0].dtype == np.float64
    np.testing.assert_allclose(sk32.predict_proba(X), model32.predict_proba(X), atol=1e-6)


# -- feature names and labels ----------------------------------------------------------------
def test_feature_names_travel_both_ways(backend_name):
    pd = pytest.importorskip("pandas")
    X, y = _data("multiclass")
    frame = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    sk = SkClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(frame, y)
    ours = from_sklearn(sk, backend=backend_name)
    assert list(ours.feature_names_in_) == ["w", "x", "y", "z"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X has feature names, but ..." warning
        np.testing.assert_allclose(
            ours.predict_proba(frame), sk.predict_proba(frame), rtol=0, atol=TOL
        )
    with pytest.raises(ValueError, match="feature names"):
        ours.predict(frame[["z", "y", "x", "w"]])
    back = to_sklearn(ours)
    assert np.array_equal(back.feature_names_in_, sk.feature_names_in_)
    assert back.feature_names_in_.dtype == object
    model = model_from_sklearn(sk, backend=backend_name)
    assert model.preprocessing.feature_names == ["w", "x", "y", "z"]
    assert list(to_sklearn(model).feature_names_in_) == ["w", "x", "y", "z"]


def test_string_labels_reach_the_bare_model():
    sk = _fitted_sklearn("binary", "relu")
    X, _ = _data("binary")
    model = model_from_sklearn(sk)
    assert list(model.preprocessing.classes) == ["no", "yes"]
    assert np.array_equal(model.predict(X), sk.predict(X))
    assert np.array_equal(to_sklearn(model).predict(X), sk.predict(X))


def test_model_from_sklearn_takes_ours_too():
    X, y = _data("multiclass")
    ours = MLPClassifier(hidden_layer_sizes=(5,), activation="gelu", max_iter=10, random_state=0)
    ours.set_params(backend="numpy", dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y)
    model = model_from_sklearn(ours)
    assert model.activations == ("gelu", "softmax") and model.loss == "cross_entropy"
    np.testing.assert_allclose(model.predict_proba(X), ours.predict_proba(X), rtol=0, atol=TOL)


# -- refusals --------------------------------------------------------------------------------
def _fitted_ours(activation: str) -> MLPClassifier:
    X, y = _data("binary")
    ours = MLPClassifier(hidden_layer_sizes=(3,), activation=activation, max_iter=3)
    ours.set_params(backend="numpy", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ours.fit(X, y)


@pytest.mark.parametrize("activation", ["gelu", "silu", "interop_softsign"])
def test_activations_sklearn_lacks_are_refused(activation):
    if activation == "interop_softsign":
        ma.register_activation(activation, "z / (1 + abs(z))")
    with pytest.raises(ValueError, match=f"activation '{activation}' has no counterpart"):
        to_sklearn(_fitted_ours(activation))


@pytest.mark.parametrize(
    ("layers", "activations", "loss", "message"),
    [
        ([2, 3, 1], ["gelu", "sigmoid"], None, "activation 'gelu' has no counterpart"),
        ([2, 3, 1], ["soft", "sigmoid"], None, "activation 'soft' has no counterpart"),
        ([2, 3, 3, 1], ["relu", "tanh", "sigmoid"], None, "one activation for all hidden"),
        ([2, 3, 1], ["relu", "sigmoid"], "squared_error", "output 'sigmoid' with loss"),
        ([2, 3, 1], ["relu", "relu"], "squared_error", "output 'relu' with loss"),
        ([2, 3, 1], ["relu", "soft"], "squared_error", "output 'soft' with loss"),
    ],
)
def test_networks_sklearn_cannot_express_are_refused(layers, activations, loss, message):
    formulas = {"soft": {"expr": "z / (1 + abs(z))", "derivative": None}}
    model = ma.MLP(layers, activations, loss, custom_activations=formulas, seed=0)
    with pytest.raises(ValueError, match=message):
        to_sklearn(model)


def test_poisson_is_refused_where_sklearn_lacks_it_and_kept_where_it_has_it():
    X, y = _data("poisson")
    ours = MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    ours.set_params(backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y)
    model = ma.MLP([4, 3, 1], ["relu", "exp"], "poisson", dtype="float64", seed=0)
    if POISSON:
        for source in (ours, model):
            sk = to_sklearn(source)
            assert sk.loss == "poisson" and sk.out_activation_ == "exp"
            np.testing.assert_allclose(sk.predict(X), source.predict(X), rtol=1e-12, atol=0)
    else:
        for source in (ours, model):
            with pytest.raises(ValueError, match=r"no Poisson loss.*since scikit-learn 1\.7"):
                to_sklearn(source)
    model.preprocessing = ma.Preprocessing(y_mean=[1.0], y_scale=[2.0])
    refusal = "target scaling cannot be folded into its 'exp'" if POISSON else "no Poisson"
    with pytest.raises(ValueError, match=refusal):
        to_sklearn(model)


def test_what_is_no_mlp_estimator_is_refused_by_type():
    sk = _fitted_sklearn("multiclass", "relu")
    ours = from_sklearn(sk)
    X, y = _data("multiclass")
    dummy = DummyClassifier().fit(X, y)
    with pytest.raises(TypeError, match=r"from_sklearn takes a fitted sklearn\.neural_network"):
        from_sklearn(dummy)
    with pytest.raises(TypeError, match="mlp_accel's already"):
        from_sklearn(ours)
    with pytest.raises(TypeError, match=r"pipeline's MLP step \(pipeline\[-1\]\)"):
        from_sklearn(make_pipeline(StandardScaler(), sk))
    with pytest.raises(TypeError, match="scikit-learn's already"):
        to_sklearn(sk)
    with pytest.raises(TypeError, match=r"to_sklearn takes .*got sklearn's DummyClassifier"):
        to_sklearn(dummy)
    with pytest.raises(TypeError, match="model_from_sklearn takes"):
        model_from_sklearn("an estimator")


def test_an_unfitted_estimator_is_refused():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        from_sklearn(SkClassifier())
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model_from_sklearn(SkRegressor())
    with pytest.raises(NotFittedError, match="not fitted yet"):
        to_sklearn(MLPClassifier())


def test_non_finite_weights_are_refused_when_importing():
    sk = _fitted_sklearn("regression", "relu")
    broken = pickle.loads(pickle.dumps(sk))
    broken.coefs_[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        from_sklearn(broken, backend="numpy")


# -- skl2onnx ---------------------------------------------------------------------------------
# Multi-output regression left out: skl2onnx 1.20 flattens its outputs to one column for
# scikit-learn's own MLPRegressor too.
@pytest.mark.parametrize("problem", ["binary", "multiclass", "multilabel", "regression"])
def test_skl2onnx_converts_the_given_back_estimator(problem):
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    X, y = _data(problem)
    cls = MLPClassifier if _is_classification(problem) else MLPRegressor
    ours = cls(hidden_layer_sizes=(6,), activation="tanh", max_iter=30, random_state=0)
    ours.set_params(backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y)
    sk = to_sklearn(ours)
    # onnxruntime has no float64 Binarizer, which multilabel outputs go through
    tensor, tol = (FloatTensorType, 1e-6) if problem == "multilabel" else (DoubleTensorType, TOL)
    options = {"zipmap": False} if _is_classification(problem) else None
    onx = skl2onnx.to_onnx(sk, initial_types=[("X", tensor([None, 4]))], options=options)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": X.astype(np.float32 if tol > TOL else np.float64)})
    if _is_classification(problem):
        labels, proba = got
        assert np.array_equal(labels, ours.predict(X))
        np.testing.assert_allclose(proba, ours.predict_proba(X), rtol=0, atol=tol)
    else:
        np.testing.assert_allclose(got[0].ravel(), ours.predict(X), rtol=0, atol=tol)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_model_saved_by_the_command_is_given_back(task, tmp_path, capsys):
    from mlp_accel.cli import main

    rng = np.random.default_rng(2)
    X = rng.normal(loc=50.0, scale=[1.0, 10.0, 0.1], size=(120, 3))
    y = np.where(X[:, 0] > 50, "high", "low") if task == "binary" else X @ [1, 2, 3]
    path, saved = tmp_path / "train.csv", tmp_path / "m.npz"
    rows = [",".join(["u", "v", "w", "target"])]
    rows += [",".join([*map(repr, row), str(label)]) for row, label in zip(X.tolist(), y)]
    path.write_text("\n".join(rows) + "\n")
    args = ["--data", str(path), "--task", task, "--epochs", "5", "--dtype", "float64"]
    assert main(["train", *args, "--no-progress", "--backend", "numpy", "--save", str(saved)]) == 0
    capsys.readouterr()
    model = ma.load(saved)
    sk = to_sklearn(model)
    assert list(sk.feature_names_in_) == ["u", "v", "w"]
    if task == "binary":
        assert list(sk.classes_) == ["high", "low"]
        assert np.array_equal(sk.predict(X), model.predict(X))
        proba = model.predict_proba(X)
        proba = np.c_[1 - proba, proba] if proba.shape[1] == 1 else proba
        np.testing.assert_allclose(sk.predict_proba(X), proba, rtol=0, atol=TOL)
    else:
        assert model.preprocessing.y_mean is not None  # the command scales the target
        np.testing.assert_allclose(sk.predict(X), model.predict(X), rtol=TOL, atol=0)
