"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier on mlp_accel."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)

from ._base import _BaseMLP
from ._docs import class_docstring, fill_doc
from ._params import is_stochastic

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = class_docstring(
        """Multi-layer perceptron classifier, a drop-in for scikit-learn's, on mlp_accel.

    Multiclass (softmax and cross-entropy), binary and multilabel (sigmoid and binary
    cross-entropy) targets, with any labels scikit-learn accepts.
""",
        own_attributes="""\
    classes_ : ndarray or list of ndarray
        Class labels (for multilabel, the label indicator columns).
""",
        examples="""\
    >>> from sklearn.datasets import load_iris
    >>> from mlp_accel.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=300, random_state=0, backend="numpy").fit(X, y)
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    """,
    )

    _score_function = staticmethod(accuracy_score)

    #: The loss minimized, as scikit-learn's attribute (not a constructor parameter).
    loss: ClassVar[str] = "log_loss"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = self._validate_xy(X, y, reset, y_numeric=False)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _decode(self, out: np.ndarray) -> np.ndarray:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    @fill_doc
    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability estimates, columns ordered as :attr:`classes_`.

        {x_parameters}

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        out = self._forward(X)
        if out.shape[1] == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    @fill_doc
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`, computed from the output logits.

        ``log(predict_proba(X))`` would be ``-inf`` wherever a probability rounds to 0 (a
        sigmoid below about -37 in float64, -88 in float32); from the logits the result is
        finite for finite logits and agrees with scikit-learn's wherever its value is exact.

        {x_parameters}

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        z = self._forward(X, logits=True)
        dtype = z.dtype
        z = z.astype(np.float64)
        if self.out_activation_ == "softmax":
            shifted = z - z.max(axis=1, keepdims=True)
            log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        elif z.shape[1] == 1:
            # log(1 - sigmoid(z)) = log_sigmoid(-z), log(sigmoid(z)) = -log(1 + exp(-z))
            log_proba = -np.logaddexp(0.0, np.hstack([z, -z]))
        else:
            log_proba = -np.logaddexp(0.0, -z)
        return log_proba.astype(dtype, copy=False)

    @available_if(is_stochastic)
    @fill_doc
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """Update the model with one epoch over the given data.

        {fit_parameters}
        classes : array of shape (n_classes,), default=None
            All the classes, required on the first call.

        {returns_self}
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
