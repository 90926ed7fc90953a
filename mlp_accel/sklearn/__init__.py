"""Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``.

The estimators take scikit-learn's constructor parameters (names and defaults) plus
``backend`` and ``dtype``, and train an :class:`mlp_accel.MLP` with :func:`mlp_accel.fit`:
scikit-learn's stopping rules (``tol``, ``n_iter_no_change``, early stopping on a held-out
split, the adaptive learning rate) are a callback of that one training loop. ``solver="lbfgs"``
hands the model's loss and gradients to SciPy's L-BFGS-B, as scikit-learn does.

Fitted parameters (``coefs_``, ``intercepts_``) are NumPy arrays; the live model and its
device arrays are dropped when pickling and rebuilt on first use, so an estimator fitted on a
GPU unpickles and predicts on a machine without one.

This package is not imported by ``import mlp_accel``::

    from mlp_accel.sklearn import MLPClassifier, MLPRegressor

Its modules: ``_params`` (accepted parameter values), ``_docs`` (the shared docstring
pieces), ``_base`` (what both estimators share: the live model, prediction, ``fit``'s checks),
``_stochastic`` and ``_lbfgs`` (the solvers), ``_stopping`` (scikit-learn's stopping rules and
the early-stopping split), ``_classifier`` and ``_regressor``; ``_interop`` and
``_sklearn_side`` (scikit-learn in and out: :func:`from_sklearn`, :func:`model_from_sklearn`,
:func:`to_sklearn`).
"""

from ._classifier import MLPClassifier
from ._interop import from_sklearn, model_from_sklearn, to_sklearn
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "from_sklearn", "model_from_sklearn", "to_sklearn"]

# Pickles and help() name the public path, not the private module that defines the class: a
# pickle that says mlp_accel.sklearn.MLPClassifier loads wherever the class is defined.
for _estimator in (MLPClassifier, MLPRegressor, from_sklearn, model_from_sklearn, to_sklearn):
    _estimator.__module__ = __name__
del _estimator
