"""What a model or a fitted estimator computes, as a :class:`~._network.Network`: the same
outputs as its ``predict`` and ``predict_proba``."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..model import MLP
from ..ops.table import CLASSIFICATION_LOSSES, activation_row
from ._network import Network

__all__ = ["describe"]


def describe(obj: Any) -> Network:
    """The network ``obj`` (an :class:`~mlp_accel.MLP` or a fitted estimator) computes.

    Raises
    ------
    TypeError
        ``obj`` is neither.
    sklearn.exceptions.NotFittedError
        An estimator that is not fitted.
    """
    if isinstance(obj, MLP):
        return _from_model(obj)
    estimators = sys.modules.get("mlp_accel.sklearn")  # never imported for an MLP
    if estimators is not None and isinstance(
        obj, (estimators.MLPClassifier, estimators.MLPRegressor)
    ):
        return _from_estimator(obj, estimators)
    raise TypeError(
        "to_onnx takes an mlp_accel.MLP or a fitted mlp_accel.sklearn estimator, "
        f"got {type(obj).__name__}"
    )


def _rows(model: MLP) -> tuple[Any, ...]:
    # spec.activations are the names the backends run: a user's formula under its key
    return tuple(activation_row(name) for name in model.spec.activations)


def _from_model(model: MLP) -> Network:
    """As :meth:`MLP.predict`: the argmax of a softmax with cross-entropy, a 0.5 threshold of
    a sigmoid with binary cross-entropy, values otherwise; with the model's preprocessing."""
    if model.activations[-1] == "softmax" and model.loss == "cross_entropy":
        head = "softmax"
    elif model.loss == "binary_cross_entropy":
        head = "sigmoid"
    else:
        head = "regression"
    net = Network(model.get_weights(), _rows(model), head, model.dtype)
    net.metadata = {"layers": list(model.layers), "activations": list(model.activations)}
    net.metadata["loss"] = model.loss
    pre = model.preprocessing
    if pre is None:
        return net
    net.x_mean, net.x_scale = pre.x_mean, pre.x_scale
    if model.loss in CLASSIFICATION_LOSSES:
        net.classes = pre.classes
    else:
        net.y_mean, net.y_scale = pre.y_mean, pre.y_scale
    if pre.feature_names is not None:
        net.metadata["feature_names"] = list(pre.feature_names)
    if pre.target_name is not None:
        net.metadata["target_name"] = pre.target_name
    return net


def _from_estimator(est: Any, estimators: Any) -> Network:
    """As the estimator's ``predict`` and ``predict_proba``: its ``classes_`` (an indicator
    matrix for multilabel targets), a binary problem's two probability columns."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    model = est._live_model()
    net = _from_model(model)
    net.metadata["estimator"] = type(est).__name__
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        net.metadata["feature_names"] = [str(n) for n in names]
    if isinstance(est, estimators.MLPClassifier) and est.out_activation_ == "softmax":
        net.classes = np.asarray(est.classes_)
    elif isinstance(est, estimators.MLPClassifier) and est.n_outputs_ == 1:
        net.classes, net.two_columns = np.asarray(est.classes_), True
    return net
