"""scikit-learn's side of :mod:`._interop`: its MLP classes (imported on use), what its MLP can
express, and its fitted estimator built from an :class:`~mlp_accel.MLP`."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from ..model import MLP
from ..ops.table import CLASSIFICATION_LOSSES
from ._params import HIDDEN_ACTIVATIONS, OUTPUTS

__all__ = [
    "sklearn_mlps",
    "check_sklearn_output",
    "refuse_activation",
    "new_sklearn",
    "model_to_sklearn",
]

#: mlp_accel's hidden activations that scikit-learn has, under scikit-learn's names.
_SKLEARN_HIDDEN = {ours: theirs for theirs, ours in HIDDEN_ACTIVATIONS.items()}

#: (output activation, loss) of a network -> scikit-learn's ``out_activation_``.
_SKLEARN_OUTPUTS = {pair: theirs for theirs, pair in OUTPUTS.items()}


def sklearn_mlps() -> tuple[type, type]:
    # Imported on use: sklearn.neural_network is not needed to train with the estimators.
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    return SkClassifier, SkRegressor


def _sklearn_has_exp_output() -> bool:
    """Whether the installed scikit-learn's MLP has the ``exp`` output (``loss="poisson"``,
    added in 1.7): its forward pass looks the output activation up in this table."""
    try:
        from sklearn.neural_network._base import ACTIVATIONS
    except ImportError:  # pragma: no cover - the table has been there since 0.18
        return False
    return "exp" in ACTIVATIONS


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def check_sklearn_output(out_activation: str) -> None:
    """Refuse an output the installed scikit-learn's MLP cannot compute."""
    if out_activation == "exp" and not _sklearn_has_exp_output():
        raise ValueError(
            f"scikit-learn {_sklearn_version()}'s MLPRegressor has no Poisson loss (exp "
            "output); it has since scikit-learn 1.7"
        )


def refuse_activation(activation: str, whose: str) -> None:
    """Raise the ValueError for a hidden activation scikit-learn's MLP lacks."""
    raise ValueError(
        f"{whose} activation {activation!r} has no counterpart in scikit-learn's MLP, whose "
        "hidden layers take identity, logistic (sigmoid), tanh or relu"
    )


def new_sklearn(classifier: bool, params: dict[str, Any]) -> Any:
    """scikit-learn's estimator with those of ``params`` its signature has (this version's)."""
    cls = sklearn_mlps()[0 if classifier else 1]
    names = inspect.signature(cls).parameters
    return cls(**{name: copy.deepcopy(value) for name, value in params.items() if name in names})


def model_to_sklearn(model: MLP) -> Any:
    """scikit-learn's fitted estimator of the network of ``model`` (see ``to_sklearn``)."""
    hidden = _model_hidden(model)
    out_activation = _model_output(model)
    weights = model.get_weights()
    binary_softmax = out_activation == "softmax" and model.layers[-1] == 2
    pre = model.preprocessing
    if binary_softmax or (pre is not None and (pre.x_mean is not None or pre.y_mean is not None)):
        # New numbers, not the model's: computed and kept in float64, which a float32
        # model's fold needs (a feature's mean over its scale can be large).
        weights = [w.astype(np.float64) for w in weights]
    coefs, intercepts = weights[0::2], weights[1::2]
    _fold_edge(model, coefs, intercepts)
    if binary_softmax:
        # softmax(z)[1] = logistic(z1 - z0): scikit-learn's binary output, one logistic unit.
        coefs[-1] = coefs[-1][:, 1:] - coefs[-1][:, :1]
        intercepts[-1] = intercepts[-1][1:] - intercepts[-1][:1]
        out_activation = "logistic"
    classifier = model.loss in CLASSIFICATION_LOSSES
    params: dict[str, Any] = {"hidden_layer_sizes": tuple(model.layers[1:-1])}
    params["activation"] = hidden
    if model.loss == "poisson":
        params["loss"] = "poisson"
    target = new_sklearn(classifier, params)
    target.coefs_, target.intercepts_ = coefs, intercepts
    target.n_features_in_ = model.layers[0]
    if pre is not None and pre.feature_names is not None:
        target.feature_names_in_ = np.array(pre.feature_names, dtype=object)
    target.n_layers_ = len(model.layers)
    target.n_outputs_ = coefs[-1].shape[1]
    target.out_activation_ = out_activation
    if classifier:
        _set_labels(target, None if pre is None else pre.classes)
    # What scikit-learn's fit sets before its first epoch, so that partial_fit can go on.
    target.n_iter_, target.t_, target.loss_curve_ = 0, 0, []
    target._no_improvement_count, target.best_loss_ = 0, np.inf
    target.validation_scores_ = target.best_validation_score_ = None
    target._best_coefs = [c.copy() for c in coefs]
    target._best_intercepts = [b.copy() for b in intercepts]
    return target


def _model_hidden(model: MLP) -> str:
    """scikit-learn's ``activation`` of a model's hidden layers (its default, relu, where
    there are none); ValueError where scikit-learn has no such network."""
    names = list(model.activations[:-1])
    for name in names:
        if name not in _SKLEARN_HIDDEN or name in model.activation_table:
            refuse_activation(name, "the model's")
    if len(set(names)) > 1:
        raise ValueError(
            "scikit-learn's MLP has one activation for all hidden layers; the model's are "
            f"{', '.join(names)}"
        )
    return _SKLEARN_HIDDEN[names[0]] if names else "relu"


def _model_output(model: MLP) -> str:
    """scikit-learn's ``out_activation_`` of a model; ValueError where it has none."""
    output, loss = model.activations[-1], model.loss
    out_activation = _SKLEARN_OUTPUTS.get((output, loss))
    if out_activation is None or output in model.activation_table:
        raise ValueError(
            f"the model's output {output!r} with loss {loss!r} has no counterpart in "
            "scikit-learn's MLP: its classifier has sigmoid (logistic) outputs with "
            "binary_cross_entropy or softmax with cross_entropy, its regressor an identity "
            "output with squared_error (or exp with poisson, since scikit-learn 1.7)"
        )
    check_sklearn_output(out_activation)
    return out_activation


def _fold_edge(model: MLP, coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> None:
    """Fold the model's feature standardization into the first layer's weights and its
    target scaling into the last's, in place.

    ``((x - m) / s) @ W + b = x @ (W / s) + (b - (m / s) @ W)``, and an identity output
    ``a * t + u`` is ``h @ (W * t) + (b * t + u)``.
    """
    pre = model.preprocessing
    if pre is not None and pre.x_mean is not None:
        mean, scale = np.asarray(pre.x_mean, np.float64), np.asarray(pre.x_scale, np.float64)
        intercepts[0] = intercepts[0] - (mean / scale) @ coefs[0]
        coefs[0] = coefs[0] / scale[:, None]
    if pre is not None and pre.y_mean is not None:
        if model.activations[-1] != "identity":
            raise ValueError(
                f"the model's target scaling cannot be folded into its {model.activations[-1]!r} "
                "output; scikit-learn's MLP has no target scaling"
            )
        mean, scale = np.asarray(pre.y_mean, np.float64), np.asarray(pre.y_scale, np.float64)
        intercepts[-1] = intercepts[-1] * scale + mean
        coefs[-1] = coefs[-1] * scale


def _set_labels(target: Any, classes: Any) -> None:
    """The classes and label binarizer of scikit-learn's classifier, fitted as its ``fit``
    fits them: on the labels, or on an indicator matrix for multilabel outputs."""
    n_outputs = target.n_outputs_
    binarizer = LabelBinarizer()
    if classes is not None:
        binarizer.fit(classes)
    elif target.out_activation_ == "logistic" and n_outputs > 1:
        binarizer.fit(np.eye(n_outputs, dtype=np.int64))  # multilabel: classes 0..k-1
    else:  # the model's own predictions: class indices
        binarizer.fit(np.arange(max(n_outputs, 2)))
    target._label_binarizer = binarizer
    target.classes_ = binarizer.classes_
