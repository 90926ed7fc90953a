"""Early stopping as scikit-learn's: the held-out validation split, and the per-epoch
bookkeeping and stopping rules as a :func:`~mlp_accel.fit` callback."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.model_selection import train_test_split

from ..callbacks import Callback
from ..model import MLP

if TYPE_CHECKING:
    from ._base import _BaseMLP

#: The validation split on the device and the host: ``(X_val_device, y_val_device,
#: w_val_device, y_val_host, w_val)``, ``y_val_host`` decoded as the estimator predicts.
Validation = tuple[Any, Any, Any, Any, Any]


class SklearnStopping(Callback):
    """scikit-learn's per-epoch bookkeeping and stopping rules, as a
    :func:`~mlp_accel.fit` callback.

    Records ``loss_curve_``, ``t_``, ``n_iter_``, the validation score and loss; counts epochs
    without improvement by ``tol`` (training loss, or validation score with early stopping);
    then divides an adaptive SGD learning rate by 5 or stops. Keeps a device copy of the best
    parameters by validation score.

    It owns the learning rate it adapts (``lr``) and the count of epochs without improvement
    (``no_improvement_count``); the estimator reads both back after the fit. It is also the
    fit's schedule: :func:`~mlp_accel.fit`'s training step, the one writer of the optimizer's
    rate, sets ``base_lr * (lr / base_lr)`` before every step.
    """

    def __init__(
        self,
        estimator: _BaseMLP,
        base_lr: float,
        lr: float,
        n_train: int,
        validation: Validation | None,
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


def split_validation(
    estimator: _BaseMLP, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any
) -> tuple[np.ndarray, np.ndarray, Any, Validation]:
    """Hold out the estimator's ``validation_fraction`` for early stopping, drawn from its
    ``_random_state``; the validation rows go to the device once.

    Returns the training rows ``X, y, sample_weight`` and the :data:`Validation` split.
    """
    est = estimator
    # Stratified for single-output classification, as scikit-learn. On the user's
    # labels rather than the encoded floats: the same split, but an error about a
    # class too small to split names the label the user knows (True, not 1.0).
    single = is_classifier(est) and est.n_outputs_ == 1
    stratify = est._decode(y) if single else None
    arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
    parts = train_test_split(
        *arrays,
        random_state=est._random_state,
        test_size=est.validation_fraction,
        stratify=stratify,
    )
    X, X_val, y, y_val = parts[:4]
    sample_weight, w_val = (None, None) if sample_weight is None else parts[4:]
    if X_val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' or the "
            "size of your dataset."
        )
    X_val_device, y_val_device = model.prepare(X_val, y_val)
    w_val_device = None if w_val is None else model.backend.asarray(w_val, est._dtype)
    # The targets as the estimator predicts them: labels, or values of shape (n,) for one
    # output; the validation score compares them with its predictions.
    y_val_host = est._decode(y_val)
    return X, y, sample_weight, (X_val_device, y_val_device, w_val_device, y_val_host, w_val)
