"""Loss functions written against an array namespace.

A loss is the mean over samples of a per-sample loss summed over outputs. Functions here
return the *sum* over the batch (the model divides once by the sample count), so gradient
accumulation and data-parallel training add sums and divide once.

Cross-entropies are computed from the logits ``z`` of the output layer (log-sigmoid,
log-sum-exp), never from clipped probabilities: they stay exact for confident predictions,
do not saturate, and do not overflow in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._names import lookup

__all__ = ["Loss", "LOSSES", "get_loss"]

Array = Any


@dataclass(frozen=True)
class Loss:
    """A loss: its batch sum from logits and its gradient with respect to the outputs.

    Parameters
    ----------
    name : str
        Registry name.
    value_sum : callable
        ``value_sum(z, yhat, y, xp) -> scalar array``: the loss summed over the batch.
    output_grad : callable
        ``output_grad(yhat, y, xp) -> dL/dyhat`` per sample (not divided by n).
    fused_activation : str
        The output activation for which ``dL/dz = yhat - y`` exactly (the matched pair).
    requires_activation : str or None
        The only output activation this loss accepts, if any.
    value_rows : callable or None
        ``value_rows(z, yhat, y, xp) -> (n,) array``: the loss of each sample, for
        sample-weighted training; ``value_sum`` is its sum.
    """

    name: str
    value_sum: Callable[..., Array]
    output_grad: Callable[..., Array]
    fused_activation: str
    requires_activation: str | None = None
    value_rows: Callable[..., Array] | None = None


def _bce_sum(z, yhat, y, xp):
    # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y z
    #                                  = max(z, 0) - y z + log1p(exp(-|z|))
    return xp.sum(xp.maximum(z, 0.0) - y * z + xp.log1p(xp.exp(-xp.abs(z))))


def _bce_rows(z, yhat, y, xp):
    return xp.sum(xp.maximum(z, 0.0) - y * z + xp.log1p(xp.exp(-xp.abs(z))), axis=1)


def _bce_grad(yhat, y, xp):
    # Only used on the unfused path, which the sigmoid requirement makes unreachable
    # through the model; kept so the table is complete and testable.
    return (yhat - y) / (yhat * (1.0 - yhat))


def _ce_sum(z, yhat, y, xp):
    # -sum_j y_j log softmax(z)_j = logsumexp(z) * sum_j y_j - sum_j y_j z_j
    m = xp.max(z, axis=1, keepdims=True)
    lse = m + xp.log(xp.sum(xp.exp(z - m), axis=1, keepdims=True))
    return xp.sum(y * (lse - z))


def _ce_rows(z, yhat, y, xp):
    m = xp.max(z, axis=1, keepdims=True)
    lse = m + xp.log(xp.sum(xp.exp(z - m), axis=1, keepdims=True))
    return xp.sum(y * (lse - z), axis=1)


def _ce_grad(yhat, y, xp):
    return -y / yhat


def _se_sum(z, yhat, y, xp):
    diff = yhat - y
    return 0.5 * xp.sum(diff * diff)


def _se_rows(z, yhat, y, xp):
    diff = yhat - y
    return 0.5 * xp.sum(diff * diff, axis=1)


def _se_grad(yhat, y, xp):
    return yhat - y


LOSSES: dict[str, Loss] = {
    "binary_cross_entropy": Loss(
        "binary_cross_entropy",
        _bce_sum,
        _bce_grad,
        "sigmoid",
        requires_activation="sigmoid",
        value_rows=_bce_rows,
    ),
    "cross_entropy": Loss(
        "cross_entropy",
        _ce_sum,
        _ce_grad,
        "softmax",
        requires_activation="softmax",
        value_rows=_ce_rows,
    ),
    # Half the squared error, as scikit-learn's, so that identity + squared_error is a matched
    # pair with dL/dz = yhat - y.
    "squared_error": Loss("squared_error", _se_sum, _se_grad, "identity", value_rows=_se_rows),
}


def get_loss(name: str | Loss) -> Loss:
    """Look up a loss by name.

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    if isinstance(name, Loss):
        return name
    return lookup(LOSSES, name, "loss", "losses")
