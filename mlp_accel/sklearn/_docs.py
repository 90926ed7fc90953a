"""numpydoc pieces of the estimators' docstrings, each written once: the shared parameters
and attributes composed into both class docstrings (so ``help(MLPClassifier)`` and
``help(MLPRegressor)`` each list every parameter), and the sections the methods share."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["class_docstring", "fill_doc"]

F = TypeVar("F", bound=Callable)

#: The parameters both estimators take, in their signatures' order.
SHARED_PARAMETERS = """\
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : str, default='relu'
        Activation of the hidden layers: scikit-learn's 'identity', 'logistic', 'tanh',
        'relu', or any elementwise activation of mlp_accel ('gelu', 'silu', 'elu',
        'softplus', 'leaky_relu', or a name added with ``mlp_accel.register_activation``).
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        ``'sgd'`` and ``'adam'`` train with :func:`mlp_accel.fit`; ``'lbfgs'`` runs SciPy's
        L-BFGS-B on the model's full-batch loss and gradients.
    alpha : float, default=0.0001
        L2 penalty ``0.5 * alpha * ||W||^2``, divided by the batch's sample (weight) count.
    batch_size : int or 'auto', default='auto'
        Minibatch size; ``'auto'`` is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        SGD's learning-rate schedule, as scikit-learn's.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of ``'invscaling'``.
    max_iter : int, default=200
        Maximum number of epochs (iterations of L-BFGS).
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Initial weights, shuffles and the early-stopping split.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
        SGD momentum, in ``[0, 1)``.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its score has not improved by
        ``tol`` for ``n_iter_no_change`` epochs, and restore the best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Maximum number of loss evaluations of L-BFGS.
    backend : {'auto', 'numpy', 'numba', 'cupy'} or Backend, default='auto'
        Where the network trains and predicts (see :func:`mlp_accel.get_backend`).
    dtype : {None, 'float32', 'float64'}, default=None
        Dtype of the weights and computation; ``None`` follows ``X`` (float32 stays float32,
        anything else becomes float64), as scikit-learn.
"""

#: The fitted attributes both estimators set.
SHARED_ATTRIBUTES = """\
    loss_ : float
        The current loss (with the penalty).
    best_loss_ : float or None
        The smallest training loss (None with early stopping).
    loss_curve_ : list of float
        The training loss of every epoch (stochastic solvers).
    validation_scores_ : list of float or None
        The validation score of every epoch (with early stopping).
    validation_loss_curve_ : list of float or None
        The mean (weighted) loss, without the penalty, on the validation split of every epoch
        (with early stopping; ``n_iter_no_change=np.inf`` records it without stopping early).
    best_validation_score_ : float or None
    t_ : int
        Number of training samples seen by the solver.
    coefs_, intercepts_ : list of ndarray
        Weights ``(n_in, n_out)`` and biases of each layer, as NumPy arrays.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string feature names.
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
"""


def class_docstring(
    summary: str, *, own_parameters: str = "", own_attributes: str = "", examples: str
) -> str:
    """A numpydoc class docstring: ``summary``, then the parameters (the estimator's own
    first, as its signature has them), the attributes (the shared ones first) and
    ``examples``.

    The pieces are indented by four spaces, as lines of a class docstring after the first.
    """
    return (
        f"{summary}\n"
        "    Parameters\n"
        "    ----------\n"
        f"{own_parameters}{SHARED_PARAMETERS}\n"
        "    Attributes\n"
        "    ----------\n"
        f"{SHARED_ATTRIBUTES}{own_attributes}\n"
        "    Examples\n"
        "    --------\n"
        f"{examples}"
    )


#: Sections the estimators' methods share: a docstring line ``{name}`` stands for the piece
#: ``name``, filled in by :func:`fill_doc`.
METHOD_SECTIONS = {
    "x_parameters": """\
Parameters
----------
X : {array-like, sparse matrix} of shape (n_samples, n_features)
    The input data (a sparse matrix is made dense).""",
    "fit_parameters": """\
Parameters
----------
X : {array-like, sparse matrix} of shape (n_samples, n_features)
    The input data (a sparse matrix is made dense).
y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    The target values (class labels in classification, real numbers in regression).
sample_weight : array-like of shape (n_samples,), default=None
    Sample weights: each step minimizes the weighted mean loss of its batch.""",
    "returns_self": """\
Returns
-------
self
    The fitted estimator.""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)\{(\w+)\}[ \t]*$", re.MULTILINE)


def fill_doc(method: F) -> F:
    """Replace each line ``{name}`` of ``method``'s docstring with ``METHOD_SECTIONS[name]``,
    indented as that line (a decorator; under any decorator that copies ``__doc__``)."""

    def piece(match: re.Match[str]) -> str:
        return textwrap.indent(METHOD_SECTIONS[match.group(2)], match.group(1))

    method.__doc__ = _PLACEHOLDER.sub(piece, method.__doc__ or "")
    return method
