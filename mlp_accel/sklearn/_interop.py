"""scikit-learn in and out: its fitted MLP estimators to ours, and ours to its.

:func:`from_sklearn` and :func:`model_from_sklearn` make our estimator or model from a fitted
``sklearn.neural_network.MLPClassifier``/``MLPRegressor``; :func:`to_sklearn` gives back one
of scikit-learn's, for the tools that accept only its classes (skl2onnx among them).

Both libraries keep a fitted network the same way (``coefs_``, ``intercepts_``,
``out_activation_``, the label binarizer), so a conversion copies arrays and never computes
with them: a scikit-learn MLP imported and given back predicts bit for bit as the original.
Building scikit-learn's estimator sets the fitted attributes its ``fit`` sets, private ones
included (``_label_binarizer``, and the bookkeeping a later ``partial_fit`` reads); they
are the same in every scikit-learn version the package supports (1.6 on, tested).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

from .._validation import check_dtype
from ..backends import Backend, get_backend
from ..model import MLP
from ..preprocessing import Preprocessing
from ._base import _BaseMLP
from ._classifier import MLPClassifier
from ._params import HIDDEN_ACTIVATIONS, OUTPUTS
from ._regressor import MLPRegressor
from ._sklearn_side import (
    check_sklearn_output,
    model_to_sklearn,
    new_sklearn,
    refuse_activation,
    sklearn_mlps,
)

__all__ = ["from_sklearn", "model_from_sklearn", "to_sklearn"]

#: Fitted state besides the weights that both libraries keep under the same names and
#: meanings, copied where the source has it (the stochastic solvers' bookkeeping, which a
#: later ``partial_fit`` or warm start reads).
_BOOKKEEPING = (
    "n_iter_",
    "t_",
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "_no_improvement_count",
)


def _what(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__.split('.')[0]}'s {cls.__name__}"


def _is_mlp_estimator(estimator: Any, ours: bool) -> bool:
    accepted = sklearn_mlps() + ((MLPClassifier, MLPRegressor) if ours else ())
    return isinstance(estimator, accepted)


def _fitted_estimator(estimator: Any, caller: str, *, ours: bool) -> Any:
    """Return a fitted MLP estimator of scikit-learn (or of ours, with ``ours``).

    Anything else raises the TypeError or NotFittedError that says why not.
    """
    if not _is_mlp_estimator(estimator, ours):
        hint = ""
        if hasattr(estimator, "steps"):
            hint = "; pass the pipeline's MLP step (pipeline[-1])"
        elif isinstance(estimator, _BaseMLP):
            hint = "; it is mlp_accel's already (model_from_sklearn gives its network)"
        raise TypeError(
            f"{caller} takes a fitted sklearn.neural_network.MLPClassifier or MLPRegressor"
            f"{' (or mlp_accel.sklearn.MLPClassifier or MLPRegressor)' if ours else ''}, "
            f"got {_what(estimator)}{hint}"
        )
    check_is_fitted(estimator, ["coefs_", "intercepts_", "out_activation_"])
    if estimator.out_activation_ not in OUTPUTS:
        raise ValueError(
            f"out_activation_ is {estimator.out_activation_!r}; an MLP estimator's is one of "
            f"{', '.join(sorted(OUTPUTS))}"
        )
    return estimator


def _network_dtype(coefs: list[Any], intercepts: list[Any], dtype: Any) -> str:
    if dtype is not None:
        return check_dtype(dtype)
    weights = [*coefs, *intercepts]
    return "float32" if all(np.asarray(w).dtype == np.float32 for w in weights) else "float64"


def _copied_weights(estimator: Any, dtype: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    coefs = [np.array(c, dtype=dtype) for c in estimator.coefs_]
    intercepts = [np.array(b, dtype=dtype) for b in estimator.intercepts_]
    return coefs, intercepts


# -- in --------------------------------------------------------------------------------------
def from_sklearn(
    estimator: Any, *, backend: str | Backend | None = None, dtype: Any = None
) -> MLPClassifier | MLPRegressor:
    """mlp_accel's fitted estimator from a fitted scikit-learn MLP.

    The network (weights, hidden and output activations, classes and label encoding,
    ``n_features_in_``, ``feature_names_in_``) and the training record (``n_iter_``, ``t_``,
    ``loss_``, ``loss_curve_``, ...) are copied; the constructor parameters are
    scikit-learn's, so a refit trains as that estimator would. A ``partial_fit`` or a warm
    start goes on from these weights with a fresh optimizer (Adam's moments and the momentum
    are not carried over).

    Parameters
    ----------
    estimator : sklearn.neural_network.MLPClassifier or MLPRegressor
        A fitted estimator (binary, multiclass, multilabel; single or multi-output
        regression, Poisson included).
    backend : {'auto', 'numpy', 'numba', 'cupy'} or Backend, optional
        Where the estimator predicts and trains; default ``'auto'``.
    dtype : {'float32', 'float64'}, optional
        Dtype of the network (and of later refits); default that of ``coefs_``.

    Returns
    -------
    mlp_accel.sklearn.MLPClassifier or mlp_accel.sklearn.MLPRegressor
        The fitted estimator. In float64 it predicts within rounding (about 1e-15) of
        ``estimator``.

    Raises
    ------
    TypeError
        ``estimator`` is not scikit-learn's MLPClassifier or MLPRegressor.
    sklearn.exceptions.NotFittedError
        ``estimator`` is not fitted.
    BackendUnavailableError
        ``backend`` does not start here.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    >>> from mlp_accel.sklearn import from_sklearn
    >>> X, y = load_iris(return_X_y=True)
    >>> sk = SkMLPClassifier(max_iter=500, random_state=0).fit(X, y)
    >>> ours = from_sklearn(sk, backend="numpy")
    >>> bool((ours.predict(X) == sk.predict(X)).all())
    True
    """
    source = _fitted_estimator(estimator, "from_sklearn", ours=False)
    cls = MLPClassifier if is_classifier(source) else MLPRegressor
    names = inspect.signature(cls).parameters
    # Deep copies, as sklearn.base.clone makes: a RandomState is not shared with the source.
    params = {
        name: copy.deepcopy(value)
        for name, value in source.get_params(deep=False).items()
        if name in names
    }
    if backend is not None:
        get_backend(backend)  # a backend asked for must start: no silent fallback
        params["backend"] = backend
    params["dtype"] = dtype
    target: Any = cls(**params)
    net_dtype = _network_dtype(source.coefs_, source.intercepts_, dtype)
    _copy_fitted(source, target, net_dtype)
    if not hasattr(target, "validation_loss_curve_"):
        # scikit-learn records no validation loss: one unknown value per validated epoch.
        scores = getattr(target, "validation_scores_", None)
        target.validation_loss_curve_ = None if scores is None else [math.nan] * len(scores)
    target._dtype = net_dtype
    target._live_model()  # builds the network now: bad weights fail here, not at predict
    return target


def _copy_fitted(source: Any, target: Any, dtype: str) -> None:
    """Set on ``target`` the fitted attributes of ``source`` (either library's estimator)."""
    target.coefs_, target.intercepts_ = _copied_weights(source, dtype)
    target.n_features_in_ = source.coefs_[0].shape[0]
    names = getattr(source, "feature_names_in_", None)
    if names is not None:
        target.feature_names_in_ = np.array(names, dtype=object)
    target.n_layers_ = len(source.coefs_) + 1
    target.n_outputs_ = source.coefs_[-1].shape[1]
    target.out_activation_ = source.out_activation_
    if is_classifier(source):
        target.classes_ = copy.deepcopy(source.classes_)
        target._label_binarizer = copy.deepcopy(source._label_binarizer)
    for name in _BOOKKEEPING:
        if hasattr(source, name):
            setattr(target, name, copy.deepcopy(getattr(source, name)))
    best = getattr(source, "_best_coefs", None), getattr(source, "_best_intercepts", None)
    if best[0] is not None and best[1] is not None:
        target._best_coefs = [np.array(c, dtype=dtype) for c in best[0]]
        target._best_intercepts = [np.array(b, dtype=dtype) for b in best[1]]
    else:
        target._best_coefs = [c.copy() for c in target.coefs_]
        target._best_intercepts = [b.copy() for b in target.intercepts_]


def model_from_sklearn(
    estimator: Any, *, backend: str | Backend = "auto", dtype: Any = None
) -> MLP:
    """The network of a fitted MLP estimator, scikit-learn's or ours, as an ``mlp_accel.MLP``.

    Its layers, activations (scikit-learn's ``logistic`` is ``sigmoid``), loss and weights are
    the estimator's; the class labels (binary and multiclass) and feature names go to its
    ``preprocessing``, so ``predict`` returns the estimator's labels and
    ``predict_proba`` has its columns.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted estimator of ``sklearn.neural_network`` or of :mod:`mlp_accel.sklearn`.
    backend : {'auto', 'numpy', 'numba', 'cupy'} or Backend, default 'auto'
        The model's backend.
    dtype : {'float32', 'float64'}, optional
        The model's dtype; default that of ``coefs_``.

    Returns
    -------
    MLP
        The model, which :func:`mlp_accel.fit` trains further and :meth:`~mlp_accel.MLP.save`
        saves.

    Raises
    ------
    TypeError
        ``estimator`` is no MLP estimator of either library.
    sklearn.exceptions.NotFittedError
        ``estimator`` is not fitted.
    """
    source = _fitted_estimator(estimator, "model_from_sklearn", ours=True)
    net_dtype = _network_dtype(source.coefs_, source.intercepts_, dtype)
    coefs, intercepts = _copied_weights(source, net_dtype)
    layers = [coefs[0].shape[0], *(c.shape[1] for c in coefs)]
    hidden = HIDDEN_ACTIVATIONS.get(source.activation, source.activation)
    out, loss = OUTPUTS[source.out_activation_]
    formulas = source._own_formulas() if isinstance(source, _BaseMLP) else None
    return MLP(
        layers,
        [hidden] * (len(layers) - 2) + [out],
        loss,
        backend=backend,
        dtype=net_dtype,
        weights=[w for pair in zip(coefs, intercepts) for w in pair],
        custom_activations=formulas,
        preprocessing=_edge_of(source),
    )


def _edge_of(estimator: Any) -> Preprocessing | None:
    """The estimator's class labels and feature names as a model's preprocessing."""
    names = getattr(estimator, "feature_names_in_", None)
    classes = None
    if is_classifier(estimator) and estimator._label_binarizer.y_type_ != "multilabel-indicator":
        # Labels of an object array (strings) as a text array, which a model file keeps.
        classes = np.asarray(list(estimator.classes_))
    if names is None and classes is None:
        return None
    return Preprocessing(classes=classes, feature_names=None if names is None else list(names))


# -- out -------------------------------------------------------------------------------------
def to_sklearn(estimator_or_model: MLPClassifier | MLPRegressor | MLP) -> Any:
    """scikit-learn's fitted MLP estimator from one of ours, or from an ``mlp_accel.MLP``.

    The result is a real ``sklearn.neural_network.MLPClassifier`` or ``MLPRegressor``, for
    the tools that accept only scikit-learn's classes (skl2onnx, for one): its weights are
    ours (copied, in their dtype), its constructor parameters ours less ``backend`` and
    ``dtype``, its fitted attributes set as scikit-learn's ``fit`` sets them, so ``predict``,
    ``predict_proba``, ``score``, ``partial_fit`` (with a fresh optimizer) and ``get_params``
    work. A model's features standardization and target scaling (its
    ``preprocessing``, as ``mlp-accel train`` saves) are folded into the
    first and last layers' weights; a model with two softmax outputs becomes scikit-learn's
    binary classifier, one logistic unit on the difference of the two logits. Both are exact
    but for rounding, and computed and kept in float64.

    Parameters
    ----------
    estimator_or_model : mlp_accel.sklearn.MLPClassifier, MLPRegressor or mlp_accel.MLP
        A fitted estimator of ours, or a model.

    Returns
    -------
    sklearn.neural_network.MLPClassifier or sklearn.neural_network.MLPRegressor
        The fitted estimator. One made by :func:`from_sklearn` gives back an estimator that
        predicts bit for bit as the original.

    Raises
    ------
    TypeError
        Neither an estimator of ours nor a model.
    sklearn.exceptions.NotFittedError
        An estimator that is not fitted.
    ValueError
        A network scikit-learn's MLP cannot express: a hidden activation other than identity,
        logistic (sigmoid), tanh and relu (gelu, a user-defined one, ...), different
        activations per hidden layer, or an output and loss it lacks (an output other than
        identity with squared error; Poisson before scikit-learn 1.7).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlp_accel.sklearn import MLPClassifier, to_sklearn
    >>> X, y = load_iris(return_X_y=True)
    >>> ours = MLPClassifier(max_iter=500, random_state=0, backend="numpy").fit(X, y)
    >>> sk = to_sklearn(ours)
    >>> type(sk).__module__, bool((sk.predict(X) == ours.predict(X)).all())
    ('sklearn.neural_network._multilayer_perceptron', True)
    """
    if isinstance(estimator_or_model, MLP):
        return model_to_sklearn(estimator_or_model)
    if isinstance(estimator_or_model, _BaseMLP):
        check_is_fitted(estimator_or_model, ["coefs_", "intercepts_", "out_activation_"])
        return _estimator_to_sklearn(estimator_or_model)
    hint = ""
    if isinstance(estimator_or_model, sklearn_mlps()):
        hint = ", which is scikit-learn's already"
    elif hasattr(estimator_or_model, "steps"):
        hint = "; pass the pipeline's MLP step (pipeline[-1])"
    raise TypeError(
        "to_sklearn takes a fitted mlp_accel.sklearn.MLPClassifier or MLPRegressor or an "
        f"mlp_accel.MLP, got {_what(estimator_or_model)}{hint}"
    )


def _estimator_to_sklearn(estimator: _BaseMLP) -> Any:
    if estimator.activation not in HIDDEN_ACTIVATIONS:
        refuse_activation(estimator.activation, "the estimator's")
    check_sklearn_output(estimator.out_activation_)
    target = new_sklearn(is_classifier(estimator), estimator.get_params(deep=False))
    # in the weights' own dtype: the copies are the same bits
    _copy_fitted(estimator, target, _network_dtype(estimator.coefs_, estimator.intercepts_, None))
    return target
