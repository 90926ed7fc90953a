"""The machinery both estimators share: the constructor parameters, the live
:class:`~mlp_accel.MLP` behind ``coefs_``/``intercepts_`` (dropped when pickling, rebuilt on
first use), prediction, and ``fit``'s checks and initialization before a solver runs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._validation import check_count, check_dtype
from ..backends import Backend, BackendUnavailableError, get_backend
from ..model import MLP
from ..ops.custom import registered_formulas
from ..train import TrainingDivergedError
from ._docs import fill_doc
from ._lbfgs import LbfgsSolverMixin
from ._params import HIDDEN_ACTIVATIONS, OUTPUTS, PARAMETER_CONSTRAINTS, STOCHASTIC_SOLVERS
from ._stochastic import StochasticSolverMixin

__all__: list[str] = []

#: scikit-learn's error for a fit whose weights are not finite.
_NON_FINITE_WEIGHTS = (
    "Solver produced non-finite parameter weights. The input data may contain large values "
    "and need to be preprocessed."
)


class _BaseMLP(StochasticSolverMixin, LbfgsSolverMixin, BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict] = PARAMETER_CONSTRAINTS

    _score_function: Any = None

    def __init__(
        self,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype

    # -- the live model, rebuilt lazily from the NumPy parameters ---------------------------
    @property
    def _dtype(self) -> str:
        """The network's dtype: the one fit chose, else that of ``coefs_`` set by hand.

        scikit-learn's own tests build an estimator by assigning ``coefs_`` and
        ``intercepts_`` and then call ``predict`` or ``partial_fit``; such an estimator never
        went through :meth:`_initialize`. Kept in ``__dict__`` under this name, so pickles
        carry it as a plain attribute.
        """
        dtype = self.__dict__.get("_dtype")
        if dtype is not None:
            return dtype
        coefs = self.__dict__.get("coefs_")
        if coefs is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute '_dtype'")
        weights = [*coefs, *self.__dict__.get("intercepts_", [])]
        if weights and all(np.asarray(w).dtype == np.float32 for w in weights):
            return "float32"
        return "float64"

    @_dtype.setter
    def _dtype(self, dtype: str) -> None:
        self.__dict__["_dtype"] = dtype

    def __getstate__(self) -> dict[str, Any]:
        # A copy: object.__getstate__ hands back the live __dict__ itself.
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        # The formulas of user-defined activations travel with the estimator (to joblib's
        # and Dask's workers, to a fresh process), which registers nothing on arrival; the
        # estimator's own formulas win over names registered here.
        state["_activation_table"] = {**registered_formulas(), **self._own_formulas()}
        optimizer = state.pop("_optimizer", None)
        if optimizer is not None and model is not None:
            state["_optimizer_state"] = optimizer.state_dict(model.backend)
        if model is not None:
            # The kernel tier its fit ran: the restored model predicts with the same one
            # (another tier rounds differently in the last bit).
            state["_model_tier"] = model.tier
        return state

    def _own_formulas(self) -> dict[str, Any]:
        return dict(self.__dict__.get("_activation_table") or {})

    def _validate_params(self) -> None:
        # scikit-learn's check knows the registered names only; a name whose formula the
        # estimator carries (unpickled in a worker) is valid too.
        if isinstance(self.activation, str) and self.activation.lower() in self._own_formulas():
            constraints = {**self._parameter_constraints, "activation": [str]}
            validate_parameter_constraints(
                constraints, self.get_params(deep=False), caller_name=type(self).__name__
            )
            return
        super()._validate_params()

    def _layer_units(self, n_features: int, n_outputs: int) -> list[int]:
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        # Integers only (NumPy's too): int() would silently truncate a width of 10.5.
        widths = [check_count(h, "hidden_layer_sizes", minimum=0) for h in hidden]
        if any(h <= 0 for h in widths):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        return [n_features, *widths, n_outputs]

    def _build_model(self, for_fit: bool) -> MLP:
        """An :class:`MLP` with the fitted architecture and the weights in ``coefs_``."""
        units = [self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_)]
        hidden = HIDDEN_ACTIVATIONS.get(self.activation, self.activation)
        out, loss = OUTPUTS[self.out_activation_]
        backend = self.backend
        try:
            get_backend(backend)
        except (BackendUnavailableError, ValueError) as exc:
            # ValueError: a backend this installation does not know.
            if for_fit:
                raise
            # A model fitted on a GPU still predicts where there is none.
            warnings.warn(f"{exc}; predicting with the numpy backend instead", stacklevel=3)
            backend = "numpy"
        model = MLP(
            units,
            activations=[hidden] * (len(units) - 2) + [out],
            loss=loss,
            backend=backend,
            dtype=self._dtype,
            seed=0,
            custom_activations=self._own_formulas(),
        )
        # the formulas this estimator runs are its own from now on (pickled with it)
        self._activation_table = {**self._own_formulas(), **model.activation_table}
        model.set_weights(self._flat_weights())
        model.tier = getattr(self, "_model_tier", None)
        return model

    def _live_model(self, for_fit: bool = False) -> MLP:
        """The live model, rebuilt after unpickling, with the weights of ``coefs_`` and
        ``intercepts_`` loaded afresh on every use.

        In scikit-learn those lists are the live arrays, and users (pruning scripts, manual
        surgery) edit them in place: reloading before each predict or fit honours such edits,
        which comparing identities could not see.
        """
        model = getattr(self, "_model", None)
        if model is None:
            model = self._model = self._build_model(for_fit)
        else:
            model.set_weights(self._flat_weights())
        return model

    def _store_weights(self, weights: list[np.ndarray]) -> None:
        self.coefs_ = list(weights[0::2])
        self.intercepts_ = list(weights[1::2])

    def _flat_weights(self) -> list[np.ndarray]:
        return [w for pair in zip(self.coefs_, self.intercepts_) for w in pair]

    # -- prediction -----------------------------------------------------------------------
    def _to_dense(self, X: Any) -> np.ndarray:
        if hasattr(X, "toarray"):
            X = X.toarray()
        return np.ascontiguousarray(X, dtype=self._dtype)

    def _forward(self, X: Any, logits: bool = False) -> np.ndarray:
        """Outputs of the network (after the output activation, or before it with ``logits``)
        as NumPy, shape (n, n_out).

        The dtype is that of ``X`` combined with the weights', as scikit-learn's matrix
        products give: a float32 model returns float64 for float64 ``X``.
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False
        )
        model = self._live_model()
        X_device = model.backend.asarray(self._to_dense(X), self._dtype)
        out = model.forward(X_device, logits=True) if logits else model.forward_device(X_device)
        return model.backend.to_numpy(out).astype(np.result_type(X.dtype, self._dtype))

    def _decode(self, out: np.ndarray) -> np.ndarray:
        """The network's outputs (n, n_out) as the estimator predicts them."""
        raise NotImplementedError

    @fill_doc
    def predict(self, X: Any) -> np.ndarray:
        """Predict with the fitted network.

        {x_parameters}

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The classifier's predicted classes (an indicator matrix for multilabel targets),
            the regressor's predicted values.
        """
        return self._decode(self._forward(X))

    def to_onnx(self, path: Any = None, **options: Any) -> Any:
        """The ONNX model of the fitted network (written to ``path`` if given).

        :func:`mlp_accel.to_onnx` with its ``dtype=`` (default: the network's) and ``opset=``:
        input ``X``; outputs ``label`` (``classes_``) and ``probabilities`` (as
        ``predict_proba``) for the classifier, ``prediction`` for the regressor.
        """
        from ..export import to_onnx

        return to_onnx(self, path, **options)

    # -- training ---------------------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        """Checked ``X`` and encoded ``y`` for a fit (see :meth:`_validate_xy`)."""
        raise NotImplementedError

    def _validate_xy(self, X: Any, y: Any, reset: bool, y_numeric: bool) -> tuple[Any, Any]:
        """scikit-learn's checks of a fit's ``X`` (dense or CSR/CSC, float64 or float32) and
        ``y``, a one-column ``y`` made 1-D with a warning."""
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=y_numeric,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _initialize(self, y: np.ndarray, units: list[int], dtype: str) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(units)
        if not is_classifier(self):
            # the loss's matched output: exp for poisson, as scikit-learn's
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self._dtype = dtype
        # scikit-learn's Glorot-uniform initialization, biases included, from random_state.
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            weights.append(self._random_state.uniform(-bound, bound, fan_out))
        self._store_weights([w.astype(dtype, copy=False) for w in weights])
        self._model = self._build_model(for_fit=True)
        self._optimizer = None
        self.__dict__.pop("_optimizer_state", None)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> _BaseMLP:
        self._validate_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        units = self._layer_units(X.shape[1], y.shape[1])
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            dtype = X.dtype.name if self.dtype is None else check_dtype(self.dtype)
            self._initialize(y, units, dtype)
        elif y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} output(s), but the fitted network has {self.n_outputs_}"
            )
        X = self._to_dense(X)
        y = np.ascontiguousarray(y, dtype=self._dtype)
        # Reloads coefs_/intercepts_, so a warm start honours in-place edits of them.
        model = self._live_model(for_fit=True)
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(model, X, y, sample_weight)
            else:
                self._fit_stochastic(model, X, y, sample_weight, incremental)
        except TrainingDivergedError as exc:
            raise ValueError(_NON_FINITE_WEIGHTS) from exc
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError(_NON_FINITE_WEIGHTS)
        return self

    @fill_doc
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _BaseMLP:
        """Fit the model to data matrix ``X`` and target(s) ``y``.

        {fit_parameters}

        {returns_self}
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
