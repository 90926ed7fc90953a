"""Loss functions written against an array namespace.

A loss is the mean over samples of a per-sample loss summed over outputs. Functions here
return the *sum* over the batch (the model divides once by the sample count), so gradient
accumulation and data-parallel training add sums and divide once.

Each loss is a row of :mod:`mlp_accel.ops.table`: its per-element value from the output
logits ``z``, its gradient with respect to the outputs, and its matched output activation.
Cross-entropies are computed from the logits (log-sigmoid, log-sum-exp), never from clipped
probabilities: they stay exact for confident predictions, do not saturate, and do not
overflow in float32. ``poisson`` is half the Poisson deviance with an ``exp`` output, as
scikit-learn's ``MLPRegressor(loss="poisson")``.
"""

from __future__ import annotations

from .ops.table import LOSS_ROWS, LOSSES, Loss, get_loss

__all__ = ["Loss", "LOSSES", "LOSS_ROWS", "get_loss"]
