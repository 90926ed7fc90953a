"""The stochastic solvers (``solver="sgd"`` and ``"adam"``) of the estimators: one
:func:`~mlp_accel.fit` per ``fit`` (one epoch per ``partial_fit``) with scikit-learn's
optimizer, batch size, stopping rules and best weights."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..model import MLP
from ..optim import SGD, Adam, Optimizer
from ..train import TrainingDivergedError, fit
from ._stopping import SklearnStopping, split_validation

__all__ = ["StochasticSolverMixin"]


class StochasticSolverMixin:
    """The sgd/adam training of :class:`~mlp_accel.sklearn._base._BaseMLP`, whose fitted state
    (``coefs_``, ``loss_curve_``, the optimizer, the adapted rate) it reads and writes."""

    def _make_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            return SGD(
                self.learning_rate_init,
                momentum=self.momentum,
                nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
            )
        return Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _resume_optimizer(self, model: MLP, incremental: bool) -> Optimizer:
        """The optimizer of this fit: the live one for a further ``partial_fit``, one rebuilt
        from its pickled state after unpickling, else a new one."""
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
        return optimizer

    def _fit_stochastic(
        self, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any, incremental: bool
    ) -> None:
        """Train with sgd or adam through :func:`~mlp_accel.fit` (one epoch for
        ``partial_fit``), scikit-learn's stopping rules being its callback."""
        optimizer = self._resume_optimizer(model, incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        validation = None
        if self.early_stopping:
            X, y, sample_weight, validation = split_validation(self, model, X, y, sample_weight)
        # One shuffling seed per call from random_state, drawn after the split so that the
        # split is scikit-learn's for the same random_state.
        model.rng = np.random.default_rng(self._random_state.randint(np.iinfo(np.int32).max))
        n_samples = X.shape[0]
        batch_size = self._batch_rows(n_samples)
        monitor = SklearnStopping(
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

    def _keep_final_weights(self, model: MLP, monitor: SklearnStopping) -> None:
        """Store the trained weights; with early stopping, the best by validation score."""
        if self.early_stopping:
            if monitor.best_params is not None:
                best = [model.backend.to_numpy(p).copy() for p in monitor.best_params]
                self._best_coefs, self._best_intercepts = best[0::2], best[1::2]
            # Restore the best weights by validation score.
            self.coefs_, self.intercepts_ = list(self._best_coefs), list(self._best_intercepts)
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
