"""The training loop, kept importable under its first name: see :mod:`mlp_accel.training`."""

from __future__ import annotations

from .training.loop import History, TrainingDivergedError, accuracy_device, fit

__all__ = ["fit", "History", "TrainingDivergedError", "accuracy_device"]
