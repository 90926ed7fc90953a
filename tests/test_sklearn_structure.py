"""The estimators as a package of small modules: the public names and pickles stay
``mlp_accel.sklearn``'s, the docstrings shared between the estimators are written once and
still document every parameter, and the two signatures agree."""

from __future__ import annotations

import inspect
import pickle
import pickletools
import re

import numpy as np
import pytest

from mlp_accel.sklearn import MLPClassifier, MLPRegressor

ESTIMATORS = [MLPClassifier, MLPRegressor]


def _pickled_globals(blob: bytes) -> set[str]:
    """The strings a pickle names (module and class names among them)."""
    return {arg for _, arg, _ in pickletools.genops(blob) if isinstance(arg, str)}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickles_name_the_public_module(cls):
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(int)
    est = cls(hidden_layer_sizes=(3,), max_iter=2, random_state=0, backend="numpy")
    with pytest.warns(Warning):  # not converged in 2 epochs
        est.fit(X, y)
    blob = pickle.dumps(est)
    names = _pickled_globals(blob)
    # A pickle made before the split names mlp_accel.sklearn; so must one made after it, or a
    # pickle would tie itself to a private module that may move again.
    assert "mlp_accel.sklearn" in names
    assert not any(name.startswith("mlp_accel.sklearn._") for name in names), names
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), est.predict(X))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_class_docstrings_document_every_parameter(cls):
    doc = inspect.getdoc(cls)
    parameters = doc.split("\nParameters\n----------\n", 1)[1].split("\nAttributes\n", 1)[0]
    documented = set()
    for line in parameters.splitlines():
        if line and not line.startswith(" ") and " : " in line:
            documented.update(name.strip() for name in line.split(" : ", 1)[0].split(","))
    assert documented == set(inspect.signature(cls).parameters)
    for section in ("Attributes", "Examples"):
        assert f"\n{section}\n" in doc


@pytest.mark.parametrize(
    "method",
    [
        MLPClassifier.fit,
        MLPClassifier.predict,
        MLPClassifier.predict_proba,
        MLPClassifier.predict_log_proba,
        MLPClassifier.partial_fit,
        MLPRegressor.fit,
        MLPRegressor.predict,
        MLPRegressor.partial_fit,
    ],
    ids=lambda m: m.__qualname__,
)
def test_method_docstrings_have_their_shared_sections_filled_in(method):
    doc = inspect.getdoc(method)
    assert not re.search(r"^\s*\{\w+\}\s*$", doc, re.MULTILINE), doc
    assert "\nParameters\n----------\nX : {array-like, sparse matrix}" in doc
    assert "\nReturns\n-------\n" in doc


def test_regressor_signature_is_loss_then_the_classifiers():
    # Written out twice (scikit-learn's estimators list their parameters explicitly, and the
    # regressor's loss comes first): the two must not drift apart, backend and dtype included.
    classifier = inspect.signature(MLPClassifier).parameters
    regressor = inspect.signature(MLPRegressor).parameters
    assert next(iter(regressor)) == "loss"
    assert list(regressor.values())[1:] == list(classifier.values())
