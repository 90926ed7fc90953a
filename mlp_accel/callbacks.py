"""Training callbacks.

A callback is a callable ``cb(epoch, logs) -> stop?`` or an object with any of
``on_train_begin(model)``, ``on_epoch_end(epoch, logs) -> stop?``, ``on_train_end()``.
"""

from __future__ import annotations

import math
import typing

from ._validation import check_count as _check_count
from ._validation import check_real as _check_real

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["Callback", "EarlyStopping"]


class Callback:
    """Base class with no-op hooks."""

    def on_train_begin(self, model: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """Called after every epoch; return True to stop training."""
        return None

    def on_train_end(self) -> None:
        """Called once after the last epoch (also after an early stop)."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs; ``*loss`` keys are minimized, others maximized.
    patience : int, default 10
    min_delta : float, default 0
    restore_best_weights : bool, default True
        At the end, put back the weights of the best epoch.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a logged metric, got {monitor!r}")
        self.monitor = monitor
        self.patience = _check_count(patience, "patience")
        self.min_delta = _check_real(min_delta, "min_delta", 0.0)
        self.restore_best_weights = restore_best_weights
        self.sign = 1.0 if monitor.endswith("loss") else -1.0
        self.best = math.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._wait = 0
        self._model: Any = None
        self._best_params: list[Any] | None = None

    def on_train_begin(self, model: Any) -> None:
        """Reset the best value and the patience count for a new run of ``model``."""
        self._model = model
        self.best, self.best_epoch, self._wait, self._best_params = math.inf, 0, 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Return True (stop) when ``monitor`` has not improved for ``patience`` epochs.

        Raises
        ------
        ValueError
            ``logs`` holds no ``monitor`` value (a ``val_*`` metric without validation data).
        """
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, but the epoch logs hold "
                f"{', '.join(sorted(logs))}; pass validation_data to fit for val_* metrics"
            )
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                backend = self._model.backend
                self._best_params = [backend.copy(p) for p in self._model.params]
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self) -> None:
        """Put back the best epoch's weights when ``restore_best_weights`` is set."""
        if self.restore_best_weights and self._best_params is not None:
            self._model.set_params(self._best_params)


# The namespace holds __all__ and modules only: the __future__ import binds a name too.
del annotations
