"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor on mlp_accel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from ..backends import Backend
from ._base import _BaseMLP
from ._docs import class_docstring, fill_doc
from ._params import is_stochastic

__all__ = ["MLPRegressor"]


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = class_docstring(
        """Multi-layer perceptron regressor, a drop-in for scikit-learn's, on mlp_accel.

    Minimizes half the squared error (identity output) or half the Poisson deviance (exp
    output), for one or several outputs.
""",
        own_parameters="""\
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half the squared error (identity output), or half the Poisson deviance with an
        exponential output (``out_activation_ = 'exp'``), as scikit-learn's; Poisson
        targets must be non-negative.
""",
        examples="""\
    >>> from sklearn.datasets import load_diabetes
    >>> from mlp_accel.sklearn import MLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = MLPRegressor(max_iter=50, random_state=0, backend="numpy").fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """,
    )

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    _score_function = staticmethod(r2_score)

    # The signature is written out, as scikit-learn's own estimators do, rather than built
    # from the base class's: get_params, help() and static tools read the parameters from it.
    # scikit-learn has ``loss`` first and positional, so it cannot be inherited;
    # tests/test_sklearn.py checks both signatures against scikit-learn's.
    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Sequence[int] | int = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
        backend: str | Backend = "auto",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            backend=backend,
            dtype=dtype,
        )
        self.loss = loss

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = self._validate_xy(X, y, reset, y_numeric=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for Poisson regression."
            )
        return X, y

    def _decode(self, out: np.ndarray) -> np.ndarray:
        # One output predicts shape (n,), as scikit-learn's.
        return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out

    @available_if(is_stochastic)
    @fill_doc
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Update the model with one epoch over the given data.

        {fit_parameters}

        {returns_self}
        """
        return self._fit(X, y, sample_weight, incremental=True)
