"""The scikit-learn estimators: scikit-learn's own estimator checks on every CPU backend, and
agreement with ``sklearn.neural_network`` at the same settings.

With ``shuffle=False`` both libraries visit the same batches in the same order from the same
initial weights (scikit-learn's initialization from ``random_state``), so SGD runs agree to
rounding: that pins learning-rate schedules, stopping rules, early stopping, sample weights and
partial_fit to scikit-learn's behaviour, not just to a similar score.
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlp_accel import available_backends
from mlp_accel.backends import BACKENDS
from mlp_accel.sklearn import MLPClassifier, MLPRegressor

CPU_BACKENDS = [name for name in available_backends() if name != "cupy"]

#: Settings under which both libraries take identical steps.
SAME_STEPS = dict(hidden_layer_sizes=(7, 5), random_state=0, shuffle=False, batch_size=32)


def _estimators_to_check():
    for backend in CPU_BACKENDS:
        yield MLPClassifier(max_iter=100, random_state=0, backend=backend)
        yield MLPRegressor(max_iter=100, random_state=0, backend=backend)


@parametrize_with_checks(list(_estimators_to_check()))
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(params=CPU_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _max_weight_difference(a, b) -> float:
    pairs = zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_)
    return max(float(np.max(np.abs(p - q))) for p, q in pairs)


def _both(sk, ours, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X, y, **fit_params)
        ours.fit(X, y, **fit_params)
    return sk, ours


# -- the interface -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"), [(MLPClassifier, SkClassifier), (MLPRegressor, SkRegressor)]
)
def test_same_parameter_names_and_defaults_as_sklearn(ours, theirs):
    mine = inspect.signature(ours).parameters
    sk = inspect.signature(theirs).parameters
    assert list(mine)[: len(sk)] == list(sk)
    assert set(mine) - set(sk) == {"backend", "dtype"}
    for name, param in sk.items():
        assert mine[name].default == param.default, name
        assert mine[name].kind == param.kind, name


def test_import_mlp_accel_does_not_import_the_sklearn_module():
    code = "import sys, mlp_accel; assert 'mlp_accel.sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- agreement with scikit-learn ------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", momentum=0.0),
        dict(solver="sgd"),
        dict(solver="sgd", nesterovs_momentum=False, activation="tanh", alpha=0.1),
        dict(solver="sgd", activation="logistic"),
        dict(solver="sgd", momentum=0.0, learning_rate="invscaling", learning_rate_init=0.1),
        dict(solver="sgd", momentum=0.0, learning_rate="adaptive", tol=1e-2, n_iter_no_change=2),
        dict(solver="sgd", early_stopping=True, n_iter_no_change=3),
    ],
    ids=["sgd", "momentum", "tanh-alpha", "logistic", "invscaling", "adaptive", "early-stopping"],
)
def test_sgd_takes_sklearns_steps(iris, backend, params):
    X, y = iris
    sk, ours = _both(
        SkClassifier(**SAME_STEPS, **params, max_iter=40),
        MLPClassifier(**SAME_STEPS, **params, max_iter=40, backend=backend),
        X,
        y,
    )
    assert ours.n_iter_ == sk.n_iter_
    assert ours.t_ == sk.t_
    np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=1e-9)
    assert _max_weight_difference(sk, ours) < 1e-9
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, sk.validation_scores_)
        assert ours.best_validation_score_ == sk.best_validation_score_
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(sk.best_loss_, rel=1e-9)


def test_adam_and_lbfgs_agree_with_sklearn(iris, backend):
    X, y = iris
    # Adam: scikit-learn adds epsilon to sqrt(v) before bias correction, mlp_accel after it
    # (PyTorch's form): the same method, steps that differ where the gradients are ~epsilon.
    sk, ours = _both(
        SkClassifier(**SAME_STEPS, activation="tanh", max_iter=40),
        MLPClassifier(**SAME_STEPS, activation="tanh", max_iter=40, backend=backend),
        X,
        y,
    )
    np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=1e-5)
    sk, ours = _both(
        SkClassifier(**SAME_STEPS, solver="lbfgs", max_iter=30),
        MLPClassifier(**SAME_STEPS, solver="lbfgs", max_iter=30, backend=backend),
        X,
        y,
    )
    assert ours.n_iter_ == sk.n_iter_
    assert ours.loss_ == pytest.approx(sk.loss_, rel=1e-6)
    assert not hasattr(ours, "loss_curve_")


def test_binary_multilabel_and_regression_take_sklearns_steps(iris, backend):
    X, y = iris
    cases = [
        (SkClassifier, MLPClassifier, X, y == 1),
        (SkClassifier, MLPClassifier, *make_multilabel_classification(random_state=0)),
    ]
    Xr, yr = make_regression(n_samples=150, n_features=5, n_targets=2, random_state=0)
    cases += [
        (SkRegressor, MLPRegressor, Xr, yr[:, 0] / 100),
        (SkRegressor, MLPRegressor, Xr, yr / 100),
    ]
    for theirs, ours, Xc, yc in cases:
        sk, mine = _both(
            theirs(**SAME_STEPS, solver="sgd", max_iter=20),
            ours(**SAME_STEPS, solver="sgd", max_iter=20, backend=backend),
            Xc,
            yc,
        )
        assert _max_weight_difference(sk, mine) < 1e-9
        assert mine.out_activation_ == sk.out_activation_
        assert mine.n_outputs_ == sk.n_outputs_ and mine.n_layers_ == sk.n_layers_
        np.testing.assert_allclose(mine.predict(Xc), sk.predict(Xc), atol=1e-9)


def test_sample_weight_takes_sklearns_steps(iris, backend):
    X, y = iris
    weights = np.random.default_rng(0).integers(0, 4, len(y)).astype(float)
    for solver in ("sgd", "lbfgs"):
        sk, ours = _both(
            SkClassifier(**SAME_STEPS, solver=solver, max_iter=20),
            MLPClassifier(**SAME_STEPS, solver=solver, max_iter=20, backend=backend),
            X,
            y,
            sample_weight=weights,
        )
        assert _max_weight_difference(sk, ours) < 1e-6


def test_integer_sample_weight_is_repetition(iris, backend):
    X, y = iris
    weights = np.random.default_rng(1).integers(0, 3, len(y))
    for solver in ("adam", "lbfgs"):
        params = dict(solver=solver, batch_size=1000, max_iter=30, random_state=0, backend=backend)
        weighted = MLPClassifier(**params)
        repeated = MLPClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            weighted.fit(X, y, sample_weight=weights)
            repeated.fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
        np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-8)


def test_partial_fit_takes_sklearns_steps(iris, backend):
    X, y = iris
    sk = SkClassifier(**SAME_STEPS, solver="sgd")
    ours = MLPClassifier(**SAME_STEPS, solver="sgd", backend=backend)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier(backend=backend).partial_fit(X, y)
    for start in range(0, 150, 50):
        part = slice(start, start + 50)
        sk.partial_fit(X[part], y[part], classes=[0, 1, 2])
        ours.partial_fit(X[part], y[part], classes=[0, 1, 2])
    assert ours.n_iter_ == sk.n_iter_ and ours.t_ == sk.t_
    assert _max_weight_difference(sk, ours) < 1e-9
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)


# -- targets, dtypes, labels -----------------------------------------------------------------------
def test_string_labels_multiclass_binary_and_multilabel(iris, backend):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(max_iter=300, random_state=0, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.score(X, names) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    binary = MLPClassifier(max_iter=50, random_state=0, backend=backend).fit(X, names == "setosa")
    assert binary.predict_proba(X).shape == (150, 2) and binary.out_activation_ == "logistic"
    Xm, Ym = make_multilabel_classification(random_state=0)
    multi = MLPClassifier(max_iter=50, random_state=0, backend=backend).fit(Xm, Ym)
    assert multi.predict(Xm).shape == Ym.shape and set(np.unique(multi.predict(Xm))) <= {0, 1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_dtype_sets_weight_dtype(iris, backend, dtype):
    X, y = iris
    clf = MLPClassifier(max_iter=5, random_state=0, backend=backend).fit(X.astype(dtype), y)
    assert all(w.dtype == dtype for w in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X.astype(dtype)).dtype == dtype
    forced = MLPRegressor(max_iter=5, dtype="float32", backend=backend).fit(X, y.astype(float))
    assert forced.coefs_[0].dtype == np.float32


def test_multioutput_regression_and_sparse_input(backend):
    X, Y = make_regression(n_samples=200, n_features=6, n_targets=3, noise=1, random_state=0)
    reg = MLPRegressor(
        hidden_layer_sizes=(32,),
        learning_rate_init=0.01,
        max_iter=300,
        random_state=0,
        backend=backend,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y / 100)
    assert reg.predict(X).shape == (200, 3) and reg.score(X, Y / 100) > 0.95
    np.testing.assert_allclose(reg.predict(sp.csr_matrix(X)), reg.predict(X))


# -- convergence and early stopping ----------------------------------------------------------------
def test_convergence_warning_and_tol_stop(iris, backend):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(max_iter=3, random_state=0, backend=backend).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(tol=0.5, n_iter_no_change=2, random_state=0, backend=backend).fit(X, y)
    # No improvement by tol in epochs 2, 3, 4: three epochs > n_iter_no_change, as sklearn.
    assert clf.n_iter_ == 4 == len(clf.loss_curve_)


def test_early_stopping_restores_best_weights_and_records_validation_loss(iris, backend):
    X, y = iris
    clf = MLPClassifier(
        solver="sgd",
        learning_rate_init=0.5,
        early_stopping=True,
        n_iter_no_change=5,
        max_iter=200,
        random_state=0,
        backend=backend,
    ).fit(X, y)
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    best = int(np.argmax(clf.validation_scores_))
    assert clf.n_iter_ == best + 1 + 5 + 1 or clf.n_iter_ == 200
    # The restored weights are the best epoch's: rerun up to that epoch without early stopping
    # on the same split, and compare.
    rerun = clone(clf).set_params(n_iter_no_change=np.inf, max_iter=best + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rerun.fit(X, y)
    assert _max_weight_difference(rerun, clf) == 0.0
    assert rerun.validation_scores_[-1] == clf.best_validation_score_


def test_warm_start_continues(iris, backend):
    X, y = iris
    clf = MLPClassifier(max_iter=5, warm_start=True, random_state=0, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        first = [c.copy() for c in clf.coefs_]
        t = clf.t_
        clf.fit(X, y)
    assert clf.t_ == 2 * t and len(clf.loss_curve_) == 10
    assert not np.allclose(first[0], clf.coefs_[0])
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X[y < 2], y[y < 2])


def test_divergence_raises_sklearns_error(iris, backend):
    X, y = iris
    reg = MLPRegressor(
        solver="sgd", learning_rate_init=10.0, momentum=0.0, max_iter=50, backend=backend
    )
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        reg.fit(X * 1e3, y * 1e6)


# -- pickling and cloning ------------------------------------------------------------------------
def test_pickle_keeps_numpy_parameters_and_optimizer_state(iris, backend):
    X, y = iris
    clf = MLPClassifier(**SAME_STEPS, solver="adam", backend=backend)
    twin = MLPClassifier(**SAME_STEPS, solver="adam", backend=backend)
    for est in (clf, twin):
        est.partial_fit(X, y, classes=[0, 1, 2])
    state = clf.__getstate__()
    assert "_model" not in state and "_optimizer" not in state
    assert all(type(w) is np.ndarray for w in state["coefs_"] + state["intercepts_"])
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    # Training goes on from the pickled optimizer state (Adam's moments and step count).
    restored.partial_fit(X, y)
    twin.partial_fit(X, y)
    assert _max_weight_difference(restored, twin) == 0.0
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "coefs_")


def test_unpickles_and_predicts_where_its_backend_cannot_start(iris, monkeypatch):
    X, y = iris
    clf = MLPClassifier(max_iter=5, random_state=0, backend="numpy").fit(X, y)
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    # A backend that is known but cannot start here, as CuPy on a machine without a GPU.
    monkeypatch.setitem(BACKENDS, "gpu_only", "mlp_accel_no_such_module:Backend")
    restored = pickle.loads(blob)
    restored.backend = "gpu_only"
    with pytest.warns(UserWarning, match="predicting with the numpy backend"):
        np.testing.assert_allclose(restored.predict_proba(X), expected)


def test_replacing_coefs_is_seen_by_predict(iris, backend):
    X, y = iris
    clf = MLPClassifier(max_iter=5, random_state=0, backend=backend).fit(X, y)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)


def test_feature_names_in(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier(max_iter=5, backend="numpy").fit(frame, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]


# -- sample weights in the library ---------------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "squared_error"])
def test_model_weighted_gradients_equal_repeated_rows(backend, loss):
    import mlp_accel as ma

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4))
    width = 1 if loss == "binary_cross_entropy" else 3
    y = {
        "cross_entropy": rng.integers(0, 3, 12),
        "binary_cross_entropy": rng.integers(0, 2, 12),
        "squared_error": rng.normal(size=(12, 3)),
    }[loss]
    weights = rng.integers(0, 4, 12)
    model = ma.MLP([4, 5, width], loss=loss, backend=backend, dtype="float64", seed=0)
    Xd, yd = model.prepare(X, y)
    wd = model.backend.asarray(weights, "float64")
    loss_w, grads_w = model.loss_and_gradients(Xd, yd, sample_weight=wd)
    Xr, yr = model.prepare(np.repeat(X, weights, axis=0), np.repeat(y, weights, axis=0))
    loss_r, grads_r = model.loss_and_gradients(Xr, yr)
    to_np = model.backend.to_numpy
    assert float(to_np(loss_w)) == pytest.approx(float(to_np(loss_r)), rel=1e-12)
    for gw, gr in zip(grads_w, grads_r):
        np.testing.assert_allclose(to_np(gw), to_np(gr), rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="sums to zero"):
        ma.fit(model, X, y, epochs=1, sample_weight=np.zeros(12))
    history = ma.fit(model, X, y, epochs=2, batch_size=5, sample_weight=weights)
    assert np.isfinite(history["loss"]).all()
