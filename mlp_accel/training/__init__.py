"""Training: the optimizer step, the batch sources' loop (:func:`fit`) and its callbacks.

Import direction: training uses the model, never the other way round (the model's
:meth:`~mlp_accel.model.MLP.train_step` convenience imports :class:`TrainingStep` lazily).
"""

from __future__ import annotations

from .step import TrainingStep, accumulated_loss_and_gradients

__all__ = ["TrainingStep", "accumulated_loss_and_gradients"]
