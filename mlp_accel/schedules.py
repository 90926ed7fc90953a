"""Learning-rate schedules: multiplicative factors of the optimizer's base learning rate.

A schedule is called before every optimizer step with the step count (from 0) and the
fractional epoch (0.0 at the start of training, 1.0 after the first epoch, ...), and returns
the factor by which the base learning rate is multiplied for that step.
"""

from __future__ import annotations

import math

from ._names import canonical_name as _canonical_name
from ._validation import check_count as _check_count
from ._validation import check_real as _check_real

__all__ = [
    "Schedule",
    "Constant",
    "StepDecay",
    "Cosine",
    "InvScaling",
    "Warmup",
    "get_schedule",
    "linear_scaling",
    "SCHEDULES",
]

#: The names :func:`get_schedule` takes.
SCHEDULES = ("constant", "step", "cosine")


class Schedule:
    """Base class: ``factor = schedule(step, epoch)``."""

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The base learning rate throughout."""

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        return 1.0


class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check_count(step_size, "step_size (epochs)")
        # gamma > 1 would grow the rate without bound; 0 would stop training silently.
        self.gamma = _check_real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        return self.gamma ** (int(epoch) // self.step_size)


class Cosine(Schedule):
    """Cosine decay from 1 to ``min_factor`` over ``epochs`` epochs (then stays there)."""

    def __init__(self, epochs: float, min_factor: float = 0.0) -> None:
        self.epochs = _check_real(epochs, "epochs", 0.0, low_open=True)
        self.min_factor = _check_real(min_factor, "min_factor", 0.0, 1.0)

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        progress = min(epoch / self.epochs, 1.0)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class InvScaling(Schedule):
    """``1 / (step + 1) ** power_t``, scikit-learn's ``learning_rate="invscaling"``."""

    def __init__(self, power_t: float = 0.5) -> None:
        self.power_t = _check_real(power_t, "power_t", 0.0)

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        return 1.0 / (step + 1) ** self.power_t


class Warmup(Schedule):
    """Linear warmup from ``start_factor`` to 1 over ``epochs`` epochs, then ``after``."""

    def __init__(
        self, epochs: float, after: Schedule | None = None, start_factor: float = 0.0
    ) -> None:
        if after is not None and not callable(after):
            raise TypeError(f"after must be a Schedule or a callable, got {after!r}")
        self.epochs = _check_real(epochs, "warmup epochs", 0.0, low_open=True)
        self.after = after or Constant()
        self.start_factor = _check_real(start_factor, "start_factor", 0.0, 1.0)

    def __call__(self, step: int, epoch: float) -> float:
        """Return the learning-rate factor at optimizer ``step`` and (fractional) ``epoch``."""
        if epoch < self.epochs:
            return self.start_factor + (1 - self.start_factor) * epoch / self.epochs
        return self.after(step, epoch - self.epochs)


def get_schedule(name: str | Schedule | None, epochs: int, warmup: float = 0.0) -> Schedule:
    """Return a schedule by name.

    ``constant``, ``step`` (x0.1 every third of the run) or ``cosine``; with ``warmup > 0``
    epochs of linear warmup in front.

    Raises
    ------
    TypeError
        ``name`` is neither a string, ``None`` nor a :class:`Schedule`.
    ValueError
        Unknown name (the message lists the valid names), ``epochs < 1``, or a negative or
        non-finite ``warmup``.
    """
    epochs = _check_count(epochs, "epochs")
    warmup = _check_real(warmup, "warmup", 0.0)
    if isinstance(name, Schedule):
        base = name
    else:
        kind = "constant" if name is None else _canonical_name(SCHEDULES, name, "schedule")
        if kind == "constant":
            base = Constant()
        elif kind == "step":
            base = StepDecay(max(1, epochs // 3))
        else:
            base = Cosine(max(epochs - warmup, 1e-9))
    return Warmup(warmup, base) if warmup > 0 else base


def linear_scaling(lr: float, batch_size: int, reference_batch: int = 256) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr * batch_size / reference_batch``.

    Raises
    ------
    ValueError
        A non-positive or non-finite ``lr``, or a batch size below 1.
    """
    lr = _check_real(lr, "lr", 0.0, low_open=True)
    batch_size = _check_count(batch_size, "batch_size")
    reference_batch = _check_count(reference_batch, "reference_batch")
    return lr * batch_size / reference_batch


# The namespace holds __all__ and modules only: the __future__ import binds a name too.
del annotations
