"""The estimators' constructor parameters: accepted values, and scikit-learn's names mapped to
mlp_accel's."""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions

from ..backends import BACKENDS, Backend

STOCHASTIC_SOLVERS = ("sgd", "adam")

#: scikit-learn's hidden activation names -> mlp_accel's.
HIDDEN_ACTIVATIONS = {
    "identity": "identity",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}

#: scikit-learn's ``out_activation_`` -> (mlp_accel output activation, loss): the matched pairs.
OUTPUTS = {
    "exp": ("exp", "poisson"),
    "softmax": ("softmax", "cross_entropy"),
    "logistic": ("sigmoid", "binary_cross_entropy"),
    "identity": ("identity", "squared_error"),
}


class _HiddenActivationNames(set):
    """The accepted ``activation=`` names, looked up live: scikit-learn's four plus every
    elementwise activation of the math table (gelu, silu, elu, softplus, ... and those added
    with :func:`mlp_accel.register_activation`)."""

    def _names(self) -> list[str]:
        from ..ops.table import ACTIVATION_ROWS

        table = (
            n
            for n, row in ACTIVATION_ROWS.items()
            if row.elementwise and n != "sigmoid" and not n.startswith("__")
        )
        return sorted({*HIDDEN_ACTIVATIONS, *table})

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: scikit-learn's ``_parameter_constraints`` for the parameters both estimators take.
PARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(_HiddenActivationNames())],
    "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "power_t": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    # mlp_accel's SGD needs momentum < 1 (scikit-learn accepts 1, which never decays).
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "nesterovs_momentum": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "beta_1": [Interval(Real, 0, 1, closed="left")],
    "beta_2": [Interval(Real, 0, 1, closed="left")],
    "epsilon": [Interval(Real, 0, None, closed="neither")],
    "n_iter_no_change": [
        Interval(Integral, 1, None, closed="left"),
        Options(Real, {np.inf}),
    ],
    "max_fun": [Interval(Integral, 1, None, closed="left")],
    "backend": [StrOptions({"auto", *BACKENDS}), Backend],
    "dtype": [None, StrOptions({"float32", "float64"}), type, np.dtype],
}


def is_stochastic(estimator: Any) -> bool:
    """``partial_fit``'s availability check (:func:`sklearn.utils.metaestimators.available_if`):
    only the stochastic solvers train one epoch at a time."""
    if estimator.solver not in STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} is "
            "not stochastic."
        )
    return True
