"""One optimizer step: gradients (accumulated over micro-batches), L2 penalty, clipping, update.

How a model is trained lives here, not in :class:`~mlp_accel.model.MLP`: the model only
computes a loss and its gradients. :func:`~mlp_accel.fit`, the Dask driver and the
scikit-learn estimators all step through :class:`TrainingStep`.
"""

from __future__ import annotations

from typing import Any

from ..backends._chunks import sum_loss_and_gradients
from ..model import MLP

__all__ = ["TrainingStep", "accumulated_loss_and_gradients"]

Array = Any


def accumulated_loss_and_gradients(
    model: MLP,
    X: Array,
    y: Array,
    accumulate: int,
    *,
    denom: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, list[Array]]:
    """:meth:`MLP.loss_and_gradients` of a batch split into ``accumulate`` micro-batches.

    Every micro-batch divides by the whole batch's ``denom`` (default: its rows, or its weight
    sum), so the summed gradients are the whole batch's, in less memory.
    """
    n = X.shape[0]
    if accumulate <= 1 or n <= 1:
        return model.loss_and_gradients(X, y, denom=denom, sample_weight=sample_weight)
    if denom is None:
        denom = n if sample_weight is None else model.weight_total(sample_weight)
    rows = -(-n // min(accumulate, n))
    parts = (
        model.loss_and_gradients(
            X[start : min(start + rows, n), :],
            y[start : min(start + rows, n), :],
            denom=denom,
            sample_weight=None
            if sample_weight is None
            else sample_weight[start : min(start + rows, n)],
        )
        for start in range(0, n, rows)
    )
    return sum_loss_and_gradients(model.backend, parts)


class TrainingStep:
    """One optimizer step of ``model`` with ``optimizer``: callable on a device batch.

    Parameters
    ----------
    model : MLP
    optimizer : Optimizer
        Its ``step(params, grads, backend)`` makes the update; its state carries over.
    accumulate : int, default 1
        Split each batch into this many micro-batches and sum their gradients before the one
        update: the same step as the whole batch, in less memory.
    alpha : float, default 0
        L2 penalty ``0.5 * alpha * sum(W**2) / n`` added to the mean loss (weights only, not
        biases), as scikit-learn's MLP.
    clip_norm : float, optional
        Rescale the gradients so their global L2 norm is at most this (``inf``: never).
    base_lr : float, optional
        The learning rate a schedule multiplies; default the optimizer's rate now.

    Notes
    -----
    While training, this object is the one writer of ``optimizer.lr``
    (:meth:`set_lr_factor`, :meth:`restore_lr`), so a schedule and a restore cannot disagree.
    """

    def __init__(
        self,
        model: MLP,
        optimizer: Any,
        *,
        accumulate: int = 1,
        alpha: float = 0.0,
        clip_norm: float | None = None,
        base_lr: float | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.accumulate = accumulate
        self.alpha = alpha
        self.clip_norm = clip_norm
        self.base_lr = optimizer.lr if base_lr is None else base_lr

    # -- the learning rate ---------------------------------------------------------------------
    def set_lr_factor(self, factor: float) -> None:
        """Set the optimizer's rate to ``base_lr * factor`` for the next steps."""
        self.optimizer.lr = self.base_lr * factor

    def restore_lr(self) -> None:
        """Put the optimizer's rate back to ``base_lr``."""
        self.optimizer.lr = self.base_lr

    # -- the step ----------------------------------------------------------------------------
    def regularize(self, loss_sum: Any, grads: list[Array], denom: Any) -> tuple[Any, list[Array]]:
        """Add the L2 penalty to a batch's loss sum and mean gradients (``denom``: the batch's
        rows or weight sum), then clip the gradients' global norm."""
        xp = self.model.backend.xp
        alpha, clip_norm = self.alpha, self.clip_norm
        if alpha:
            weights = self.model.params[0::2]
            penalty = sum(xp.sum(W * W) for W in weights)
            loss_sum = loss_sum + 0.5 * alpha * penalty
            for k, W in enumerate(weights):
                grads[2 * k] = grads[2 * k] + (alpha / denom) * W
        # An infinite bound never clips (and inf / inf would make every gradient NaN).
        if clip_norm is not None and clip_norm != float("inf"):
            norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
            scale = clip_norm / xp.maximum(norm, clip_norm)
            grads = [g * scale for g in grads]
        return loss_sum, grads

    def gradients(
        self, X: Array, y: Array, *, sample_weight: Array | None = None
    ) -> tuple[Array, list[Array]]:
        """The batch's loss sum (with the penalty) and the gradients the update will use."""
        model = self.model
        # The mean is over the rows, or over the weights with sample weights.
        if sample_weight is None:
            denom = X.shape[0]
        else:
            denom = model.weight_total(sample_weight)
        loss_sum, grads = accumulated_loss_and_gradients(
            model, X, y, self.accumulate, denom=denom, sample_weight=sample_weight
        )
        return self.regularize(loss_sum, grads, denom)

    def apply(self, grads: list[Array]) -> None:
        """Update the model's parameters with the optimizer."""
        model = self.model
        model.set_params(self.optimizer.step(model.params, grads, model.backend))

    def __call__(self, X: Array, y: Array, *, sample_weight: Array | None = None) -> Array:
        """One step on a device batch; returns its loss sum (a device scalar)."""
        loss_sum, grads = self.gradients(X, y, sample_weight=sample_weight)
        self.apply(grads)
        return loss_sum
