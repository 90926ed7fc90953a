"""The L-BFGS solver (``solver="lbfgs"``) of the estimators: SciPy's L-BFGS-B on the model's
full-batch loss and gradients, as scikit-learn's."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize
from sklearn.utils.optimize import _check_optimize_result

from ..model import MLP
from ..optim import SGD
from ..training.step import TrainingStep

__all__ = ["LbfgsSolverMixin"]


class LbfgsSolverMixin:
    """The L-BFGS training of :class:`~mlp_accel.sklearn._base._BaseMLP`."""

    def _fit_lbfgs(self, model: MLP, X: np.ndarray, y: np.ndarray, sample_weight: Any) -> None:
        """Minimize the penalized mean loss over the packed weights, starting from
        ``coefs_``/``intercepts_``, and store the result."""
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
