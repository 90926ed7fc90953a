"""The estimators agree with scikit-learn on the edges: a diverging fit with
early stopping, in-place edits of ``coefs_``/``intercepts_``, log-probabilities from the logits,
the ``loss`` attribute, the output dtype, and the labels in the stratified-split error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier

from mlp_accel import available_backends
from mlp_accel.sklearn import MLPClassifier, MLPRegressor

CPU_BACKENDS = [name for name in available_backends() if name != "cupy"]


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return est.fit(X, y)


def _diverging_regressor():
    # The estimator of scikit-learn's test_mlp_diverging_loss: its loss overflows in epoch 6.
    return MLPRegressor(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        alpha=0.0001,
        learning_rate="constant",
        learning_rate_init=1,
        shuffle=True,
        max_iter=20,
        early_stopping=True,
        n_iter_no_change=10,
        random_state=0,
        backend="numpy",
    )


def test_mlp_diverging_loss():
    # scikit-learn's own test (sklearn/neural_network/tests/test_mlp.py), on raw iris: before
    # the fix the fit raised "Solver produced non-finite parameter weights".
    X, y = load_iris(return_X_y=True)
    mlp = _quiet_fit(_diverging_regressor(), X, y)
    assert str(mlp.validation_scores_[-1]) == str(np.nan)
    assert isinstance(mlp.validation_scores_[-1], float)
    # the best finite weights are kept and predict with them
    assert all(np.isfinite(w).all() for w in (*mlp.coefs_, *mlp.intercepts_))
    assert np.isfinite(mlp.predict(X)).all()
    assert len(mlp.loss_curve_) == len(mlp.validation_scores_) == mlp.n_iter_
    best = int(np.nanargmax(mlp.validation_scores_))
    assert mlp.best_validation_score_ == mlp.validation_scores_[best]


def test_diverging_fit_with_early_stopping_warns_and_without_raises():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(ConvergenceWarning, match="diverged in epoch 6.*best validation"):
            _diverging_regressor().fit(X, y)
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            _diverging_regressor().set_params(early_stopping=False).fit(X, y)


def test_in_place_edits_of_coefs_are_seen_by_predict(iris):
    X, y = iris
    clf = _quiet_fit(MLPClassifier(max_iter=5, random_state=0, backend="numpy"), X, y)
    clf.predict_proba(X)  # the live model exists and has been used
    for c in clf.coefs_:
        c[...] = 0.0
    for b in clf.intercepts_:
        b[...] = 0.0
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)


def test_warm_start_starts_from_in_place_edits(iris):
    X, y = iris
    params = dict(max_iter=2, random_state=0, backend="numpy", warm_start=True, shuffle=False)
    edited = _quiet_fit(MLPClassifier(**params), X, y)
    replaced = _quiet_fit(MLPClassifier(**params), X, y)
    # a pruning script: zero the smallest weights, in place in one, by new arrays in the other
    for est, in_place in ((edited, True), (replaced, False)):
        pruned = [np.where(np.abs(c) < 0.1, 0.0, c) for c in est.coefs_]
        if in_place:
            for c, p in zip(est.coefs_, pruned):
                c[...] = p
        else:
            est.coefs_ = pruned
        _quiet_fit(est, X, y)
    for a, b in zip(edited.coefs_, replaced.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_predict_log_proba_from_logits_matches_sklearn(iris, backend, task):
    X, y = iris
    if task == "binary":
        y = y == 2
    sk = _quiet_fit(SkClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0), X, y)
    ours = _quiet_fit(
        MLPClassifier(hidden_layer_sizes=(7,), max_iter=1, random_state=0, backend=backend),
        X,
        y,
    )
    # Confident outputs: probabilities that round to 0 or 1 in float64.
    sk.coefs_[-1] *= 60.0 if task == "binary" else 1000.0
    ours.coefs_ = [c.copy() for c in sk.coefs_]
    ours.intercepts_ = [b.copy() for b in sk.intercepts_]
    with np.errstate(divide="ignore"):
        theirs = sk.predict_log_proba(X)
    got = ours.predict_log_proba(X)
    assert got.dtype == np.float64 and got.shape == theirs.shape
    assert np.isfinite(got).all()
    assert np.isneginf(theirs).any()  # the tails where log(p) underflows are reached
    exact = np.isfinite(theirs) & (theirs > -700)
    if task == "binary":
        # scikit-learn's class-0 column is log(1 - p): exact only while p <= 1/2
        exact[:, 0] &= theirs[:, 0] >= np.log(0.5)
    np.testing.assert_allclose(got[exact], theirs[exact], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.exp(got), ours.predict_proba(X), rtol=1e-9, atol=1e-15)


def test_predict_log_proba_multilabel_is_finite(iris):
    X, y = iris
    Y = np.stack([y == 0, y == 2], axis=1)
    clf = _quiet_fit(MLPClassifier(max_iter=5, random_state=0, backend="numpy"), X, Y)
    clf.coefs_[-1] *= 1e3
    got = clf.predict_log_proba(X)
    assert np.isfinite(got).all() and got.shape == (150, 2)
    assert got.min() < -100


def test_classifier_has_sklearns_loss_attribute():
    clf = MLPClassifier()
    assert clf.loss == SkClassifier().loss == "log_loss"
    assert "loss" not in clf.get_params()


def test_float32_model_returns_float64_for_float64_input(iris):
    X, y = iris
    X32 = X.astype(np.float32)
    clf = _quiet_fit(MLPClassifier(max_iter=3, random_state=0, backend="numpy"), X32, y)
    assert clf.coefs_[0].dtype == np.float32
    assert clf.predict_proba(X32).dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float64
    assert clf.predict_log_proba(X).dtype == np.float64
    reg = _quiet_fit(MLPRegressor(max_iter=3, random_state=0, backend="numpy"), X32, X32[:, 0])
    assert reg.predict(X).dtype == np.float64


def test_stratified_split_error_names_the_users_labels():
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.array([False] * 19 + [True])
    clf = MLPClassifier(early_stopping=True, max_iter=2, backend="numpy")
    with pytest.raises(ValueError, match="too few") as info:
        clf.fit(X, y)
    assert "True" in str(info.value) and "1.0" not in str(info.value)


def test_integral_numpy_scalars_as_estimator_counts(iris):
    # max_iter=np.int64(3) reaches mlp_accel.fit as epochs, which must take NumPy integers.
    X, y = iris
    params = dict(
        hidden_layer_sizes=(np.int64(5), np.int32(4)),
        max_iter=np.int64(3),
        batch_size=np.int64(16),
        n_iter_no_change=np.int64(2),
        random_state=0,
        backend="numpy",
    )
    clf = _quiet_fit(MLPClassifier(**params), X, y)
    assert [c.shape[1] for c in clf.coefs_] == [5, 4, 3] and clf.n_iter_ == 3
    with pytest.raises(TypeError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(5.5,), max_iter=1, backend="numpy").fit(X, y)


def _hand_built(est_class, dtype=np.float64, **params):
    """An estimator whose weights were assigned by hand, as scikit-learn's ``test_fit`` does."""
    est = est_class(
        solver="sgd",
        learning_rate_init=0.1,
        alpha=0.1,
        activation="logistic",
        random_state=1,
        max_iter=1,
        hidden_layer_sizes=2,
        momentum=0,
        **params,
    )
    est.coefs_ = [
        np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]], dtype),
        np.array([[0.1], [0.2]], dtype),
    ]
    est.intercepts_ = [np.array([0.1, 0.1], dtype), np.array([1.0], dtype)]
    est.n_outputs_, est.n_features_in_, est.n_layers_ = 1, 3, 3
    est.n_iter_, est.t_, est.learning_rate_ = 0, 0, 0.1
    est.out_activation_ = "logistic" if est_class is not MLPRegressor else "identity"
    est.best_loss_, est.loss_curve_, est._no_improvement_count = np.inf, [], 0
    return est


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_estimator_with_coefficients_set_by_hand(backend):
    # Before: AttributeError on _dtype, set only by a first fit.
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    ours = _hand_built(MLPClassifier, backend=backend)
    ours.partial_fit(X, y, classes=[0, 1])
    theirs = _hand_built(SkClassifier)
    theirs.partial_fit(X, y, classes=[0, 1])
    assert ours.predict_proba(X)[0, 1] == pytest.approx(0.739, rel=1e-3)  # test_fit's value
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    # float32 coefficients make a float32 network; predict alone needs no fit either
    reg = _hand_built(MLPRegressor, np.float32, backend=backend)
    out = reg.predict(X.astype(np.float32))
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(1.0 + 0.1 / (1 + np.exp(-0.75)) + 0.2 / (1 + np.exp(-0.3)))
