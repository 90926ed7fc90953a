"""Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``.

The estimators take scikit-learn's constructor parameters (names and defaults) plus
``backend`` and ``dtype``, and train an :class:`mlp_accel.MLP` with :func:`mlp_accel.fit`:
scikit-learn's stopping rules (``tol``, ``n_iter_no_change``, early stopping on a held-out
split, the adaptive learning rate) are a callback of that one training loop. ``solver="lbfgs"``
hands the model's loss and gradients to SciPy's L-BFGS-B, as scikit-learn does.

Fitted parameters (``coefs_``, ``intercepts_``) are NumPy arrays; the live model and its
device arrays are dropped when pickling and rebuilt on first use, so an estimator fitted on a
GPU unpickles and predicts on a machine without one.

This module is not imported by ``import mlp_accel``::

    from mlp_accel.sklearn import MLPClassifier, MLPRegressor
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._validation import check_count, check_dtype
from .backends import BACKENDS, Backend, BackendUnavailableError, get_backend
from .callbacks import Callback
from .model import MLP
from .optim import SGD, Adam, Optimizer
from .train import TrainingDivergedError, fit
from .training.step import TrainingStep

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")

#: scikit-learn's hidden activation names -> mlp_accel's.
_HIDDEN_ACTIVATIONS = {
    "identity": "identity",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}


class _HiddenActivationNames(set):
    """The accepted ``activation=`` names, looked up live: scikit-learn's four plus every
    elementwise activation of the math table (gelu, silu, elu, softplus, ... and those added
    with :func:`mlp_accel.register_activation`)."""

    def _names(self) -> list[str]:
        from .ops.table import ACTIVATION_ROWS

        table = (n for n, row in ACTIVATION_ROWS.items() if row.elementwise and n != "sigmoid")
        return sorted({*_HIDDEN_ACTIVATIONS, *table})

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: scikit-learn's ``out_activation_`` -> (mlp_accel output activation, loss): the matched pairs.
_OUTPUTS = {
    "exp": ("exp", "poisson"),
    "softmax": ("softmax", "cross_entropy"),
    "logistic": ("sigmoid", "binary_cross_entropy"),
    "identity": ("identity", "squared_error"),
}


def _is_stochastic(estimator: Any) -> bool:
    if estimator.solver not in _STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} is "
            "not stochastic."
        )
    return True


class _SklearnStopping(Callback):
    """scikit-learn's per-epoch bookkeeping and stopping rules, as a :func:`fit` callback.

    Records ``loss_curve_``, ``t_``, ``n_iter_``, the validation score and loss; counts epochs
    without improvement by ``tol`` (training loss, or validation score with early stopping);
    then divides an adaptive SGD learning rate by 5 or stops. Keeps a device copy of the best
    parameters by validation score.

    It owns the learning rate it adapts (``lr``) and the count of epochs without improvement
    (``no_improvement_count``); the estimator reads both back after :func:`fit`. It is also the
    fit's schedule: :func:`fit`'s training step, the one writer of the optimizer's rate, sets
    ``base_lr * (lr / base_lr)`` before every step.
    """

    def __init__(
        self,
        estimator: _BaseMLP,
        base_lr: float,
        lr: float,
        n_train: int,
        validation: tuple[Any, Any, Any, Any, Any] | None,
        no_improvement_count: int,
    ) -> None:
        self.est = estimator
        self.base_lr = base_lr
        self.lr = lr
        self.n_train = n_train
        self.validation = validation
        self.no_improvement_count = no_improvement_count
        self.stopped = False
        self.best_params: list[Any] | None = None
        self._model: MLP | None = None

    def on_train_begin(self, model: MLP) -> None:
        self._model = model

    def __call__(self, step: int, epoch: float) -> float:
        """The schedule's factor: the adapted rate over the optimizer's base rate."""
        return self.lr / self.base_lr

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        est, model = self.est, self._model
        est.n_iter_ += 1
        est.loss_ = logs["loss"]
        est.t_ += self.n_train
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if self.validation is not None:
            score = self._validate(model)
            if score < est.best_validation_score_ + est.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_params = [model.backend.copy(p) for p in model.params]
        else:
            if est.loss_curve_[-1] > est.best_loss_ - est.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])
        adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            self.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if self.no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            msg = (
                f"{what} did not improve more than tol={est.tol:f} for "
                f"{est.n_iter_no_change} consecutive epochs."
            )
            if adaptive and self.lr > 1e-6:
                self.lr /= 5.0
                self.no_improvement_count = 0
                if est.verbose:
                    print(f"{msg} Setting learning rate to {self.lr:f}")
            else:
                if est.verbose:
                    print(msg + (" Learning rate too small. Stopping." if adaptive else ""))
                self.stopped = True
                return True
        return False

    def _validate(self, model: MLP) -> float:
        est = self.est
        X_val, y_val_device, w_val_device, y_val, w_val = self.validation
        out = model.forward_device(X_val)
        loss_sum = model.loss_sum(X_val, y_val_device, sample_weight=w_val_device)
        total = X_val.shape[0] if w_val is None else float(np.sum(w_val))
        est.validation_loss_curve_.append(float(model.backend.to_numpy(loss_sum)) / total)
        y_pred = est._decode(model.backend.to_numpy(out))
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            score = math.nan
        else:
            score = float(est._score_function(y_val, y_pred, sample_weight=w_val))
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        return score


class _BaseMLP(BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
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
    def __getstate__(self) -> dict[str, Any]:
        # A copy: object.__getstate__ hands back the live __dict__ itself.
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        optimizer = state.pop("_optimizer", None)
        if optimizer is not None and model is not None:
            state["_optimizer_state"] = optimizer.state_dict(model.backend)
        return state

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
        hidden = _HIDDEN_ACTIVATIONS.get(self.activation, self.activation)
        out, loss = _OUTPUTS[self.out_activation_]
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
        )
        model.set_weights(self._flat_weights())
        return model

    def _live_model(self, for_fit: bool = False) -> MLP:
        """The live model, rebuilt after unpickling, with the weights of ``coefs_`` and
        ``intercepts_`` loaded afresh on every use.

        In scikit-learn those lists are the live arrays, and users (pruning scripts, manual
        surgery) edit them in place: reloading before each predict or fit honours such edits,
        which comparing identities could not see. On the numpy backend the load is no copy.
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

    # -- training ---------------------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        raise NotImplementedError

    def _decode(self, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

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
        if self.solver in _STOCHASTIC_SOLVERS:
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
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            ) from exc
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        return self

    def _make_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            return SGD(
                self.learning_rate_init,
                momentum=self.momentum,
                nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
            )
        return Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _split_validation(
        self, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, Any, tuple[Any, Any, Any, Any, Any]]:
        """Hold out ``validation_fraction`` for early stopping; the validation rows go to the
        device once."""
        # Stratified for single-output classification, as scikit-learn. On the user's
        # labels rather than the encoded floats: the same split, but an error about a
        # class too small to split names the label the user knows (True, not 1.0).
        single = is_classifier(self) and self.n_outputs_ == 1
        stratify = self._decode(y) if single else None
        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        parts = train_test_split(
            *arrays,
            random_state=self._random_state,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        X, X_val, y, y_val = parts[:4]
        sample_weight, w_val = (None, None) if sample_weight is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the "
                "size of your dataset."
            )
        backend = model.backend
        X_val_device, y_val_device = model.prepare(X_val, y_val)
        w_val_device = None if w_val is None else backend.asarray(w_val, self._dtype)
        y_val_host = self._decode(y_val) if is_classifier(self) else self._squeeze(y_val)
        validation = (X_val_device, y_val_device, w_val_device, y_val_host, w_val)
        return X, y, sample_weight, validation

    def _fit_stochastic(
        self, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any, incremental: bool
    ) -> None:
        optimizer = getattr(self, "_optimizer", None)
        if not incremental or optimizer is None:
            optimizer = self._make_optimizer()
            saved = self.__dict__.pop("_optimizer_state", None)
            if incremental and saved is not None:
                optimizer.load_state_dict(saved, model.backend)
            else:
                self._learning_rate = optimizer.lr
        # The optimizer keeps learning_rate_init as its base rate; the adapted rate
        # (self._learning_rate) reaches it through the monitor, fit's schedule.
        self._optimizer = optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        validation = None
        if self.early_stopping:
            X, y, sample_weight, validation = self._split_validation(model, X, y, sample_weight)
        # One shuffling seed per call from random_state, drawn after the split so that the
        # split is scikit-learn's for the same random_state.
        model.rng = np.random.default_rng(self._random_state.randint(np.iinfo(np.int32).max))
        n_samples = X.shape[0]
        batch_size = self._batch_rows(n_samples)
        monitor = _SklearnStopping(
            self,
            optimizer.lr,
            self._learning_rate,
            n_samples,
            validation,
            self._no_improvement_count,
        )
        self.n_iter_ = 0
        diverged = None
        try:
            fit(
                model,
                X,
                y,
                epochs=1 if incremental else self.max_iter,
                batch_size=batch_size,
                optimizer=optimizer,
                shuffle=self.shuffle,
                callbacks=[monitor],
                schedule=monitor,
                alpha=self.alpha,
                sample_weight=sample_weight,
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        except TrainingDivergedError as exc:
            if not self.early_stopping:
                raise
            # As scikit-learn: with early stopping a diverging run keeps the best weights by
            # validation score and records the diverged epoch's scores as NaN. fit has put
            # back the finite weights of the epoch before; training stops there.
            diverged = exc
            self._record_diverged_epoch(n_samples)
        finally:
            # The adapted rate and the count carry over to the next partial_fit.
            self._learning_rate = monitor.lr
            self._no_improvement_count = monitor.no_improvement_count
        if diverged is not None:
            warnings.warn(
                f"Training diverged in epoch {self.n_iter_} ({diverged.args[0]}); keeping the "
                "weights with the best validation score.",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif not incremental and not monitor.stopped and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._keep_final_weights(model, monitor)

    def _batch_rows(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to "
                "be clipped",
                stacklevel=4,
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _keep_final_weights(self, model: MLP, monitor: _SklearnStopping) -> None:
        """Store the trained weights; with early stopping, the best by validation score."""
        if self.early_stopping:
            if monitor.best_params is not None:
                best = [model.backend.to_numpy(p).copy() for p in monitor.best_params]
                self._best_coefs, self._best_intercepts = best[0::2], best[1::2]
            # Restore the best weights by validation score.
            self._store_weights(
                [w for pair in zip(self._best_coefs, self._best_intercepts) for w in pair]
            )
            model.set_weights(self._flat_weights())
        else:
            self._store_weights(model.get_weights())

    def _record_diverged_epoch(self, n_samples: int) -> None:
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = math.nan
        self.loss_curve_.append(math.nan)
        self.validation_scores_.append(math.nan)
        self.validation_loss_curve_.append(math.nan)

    def _flat_weights(self) -> list[np.ndarray]:
        return [w for pair in zip(self.coefs_, self.intercepts_) for w in pair]

    def _fit_lbfgs(self, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any) -> None:
        backend = model.backend
        X_device, y_device = model.prepare(X, y)
        w_device = None if sample_weight is None else backend.asarray(sample_weight, self._dtype)
        denom = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        denom = denom or 1.0
        shapes = model.weight_shapes
        sizes = [int(np.prod(s)) for s in shapes]
        splits = np.cumsum(sizes)[:-1]
        # Only the gradients are used: L-BFGS makes its own updates.
        step = TrainingStep(model, SGD(1.0), alpha=self.alpha)

        def objective(packed: np.ndarray) -> tuple[float, np.ndarray]:
            pieces = np.split(packed, splits)
            model.set_params(
                [backend.asarray(p.reshape(s), self._dtype) for p, s in zip(pieces, shapes)]
            )
            loss_sum, grads = step.gradients(X_device, y_device, sample_weight=w_device)
            grad = np.concatenate([backend.to_numpy(g).ravel() for g in grads])
            return float(backend.to_numpy(loss_sum)) / denom, grad.astype(np.float64)

        start = np.concatenate([w.ravel() for w in self._flat_weights()]).astype(np.float64)
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        result = scipy.optimize.minimize(
            objective, start, method="L-BFGS-B", jac=True, options=options
        )
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        if self.verbose:
            print(f"L-BFGS-B: {self.n_iter_} iterations, loss = {self.loss_:.8f}")
        pieces = np.split(np.asarray(result.x), splits)
        weights = [p.reshape(s).astype(self._dtype) for p, s in zip(pieces, shapes)]
        model.set_weights(weights)
        self._store_weights(model.get_weights())

    @staticmethod
    def _squeeze(y: np.ndarray) -> np.ndarray:
        return y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _BaseMLP:
        """Fit the model to data matrix ``X`` and target(s) ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (a sparse matrix is made dense).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights: each step minimizes the weighted mean loss of its batch.

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
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

_ATTRIBUTES_DOC = """
    Attributes
    ----------
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


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer perceptron classifier, a drop-in for scikit-learn's, on mlp_accel.

    Multiclass (softmax and cross-entropy), binary and multilabel (sigmoid and binary
    cross-entropy) targets, with any labels scikit-learn accepts.
"""
        + _PARAMS_DOC
        + _ATTRIBUTES_DOC
        + """    classes_ : ndarray or list of ndarray
        Class labels (for multilabel, the label indicator columns).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlp_accel.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=300, random_state=0, backend="numpy").fit(X, y)
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    """
    )

    _score_function = staticmethod(accuracy_score)

    #: The loss minimized, as scikit-learn's attribute (not a constructor parameter).
    loss: ClassVar[str] = "log_loss"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
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

    def predict(self, X: Any) -> np.ndarray:
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes (an indicator matrix for multilabel targets).
        """
        return self._decode(self._forward(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability estimates, columns ordered as :attr:`classes_`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        out = self._forward(X)
        if out.shape[1] == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`, computed from the output logits.

        ``log(predict_proba(X))`` would be ``-inf`` wherever a probability rounds to 0 (a
        sigmoid below about -37 in float64, -88 in float32); from the logits the result is
        finite for finite logits and agrees with scikit-learn's wherever its value is exact.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

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

    @available_if(_is_stochastic)
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            All the classes, required on the first call.

        Returns
        -------
        self
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


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer perceptron regressor, a drop-in for scikit-learn's, on mlp_accel.

    Minimizes half the squared error (identity output) or half the Poisson deviance (exp
    output), for one or several outputs.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half the squared error (identity output), or half the Poisson deviance with an
        exponential output (``out_activation_ = 'exp'``), as scikit-learn's; Poisson
        targets must be non-negative.
"""
        + _PARAMS_DOC.split("Parameters\n    ----------\n", 1)[1]
        + _ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from mlp_accel.sklearn import MLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = MLPRegressor(max_iter=50, random_state=0, backend="numpy").fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """
    )

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    _score_function = staticmethod(r2_score)

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
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for Poisson regression."
            )
        return X, y

    def _decode(self, out: np.ndarray) -> np.ndarray:
        return self._squeeze(out)

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the fitted network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._decode(self._forward(X))

    @available_if(_is_stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)
