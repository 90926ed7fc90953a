"""The callbacks' part of a fit beyond their hooks: their states in checkpoints and their
learning-rate factors (see :mod:`mlp_accel.callbacks`).

A callback with ``state_dict`` and ``load_state_dict`` has its state written into every
checkpoint under its ``state_key`` and given back when a fit resumes from one, so a resumed
run equals an uninterrupted one. A callback with ``lr_factor`` scales the rate of the next
epoch's steps: the loop multiplies the schedule's factor by it and hands the product to the
training step, which stays the one writer of ``optimizer.lr``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..ops.table import CLASSIFICATION_LOSSES

__all__ = ["CallbackStates", "split_hooks", "encode_state", "decode_state", "ARRAY"]

#: The key of the one-key mapping that stands for an array in a state's JSON; the array is a
#: member of the checkpoint file named by the value.
ARRAY = "__array__"

# The monitored keys that only validation data gives: a callback monitoring one of them in a
# fit without validation data is refused before the first epoch, not after it.
_VALIDATION_KEYS = ("val_loss", "val_accuracy")


def encode_state(value: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    """``value`` as JSON, each NumPy array moved into ``arrays`` and named in its place.

    Raises
    ------
    TypeError
        A value that is neither JSON nor a numeric array (a checkpoint holds no pickles).
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"the state of callback {key} holds an array of dtype {value.dtype}")
        name = str(len(arrays))
        arrays[name] = value
        return {ARRAY: name}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        if ARRAY in value or not all(isinstance(k, str) for k in value):
            raise TypeError(
                f"the state of callback {key} has a mapping whose keys are not strings, or "
                f"use {ARRAY!r}: {list(value)!r}"
            )
        return {k: encode_state(v, arrays, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_state(v, arrays, key) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"the state of callback {key} holds a {type(value).__name__}, which a checkpoint "
        "cannot hold: JSON values and NumPy arrays only"
    )


def decode_state(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """The state :func:`encode_state` wrote, its arrays taken from ``arrays``.

    Raises
    ------
    ValueError
        An array that the file lacks, or JSON nested too deeply.
    """
    try:
        return _decoded(value, arrays, path)
    except RecursionError:
        raise ValueError(f"{path}: a callback state is nested too deeply") from None


def _decoded(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(value, dict):
        if list(value) == [ARRAY]:
            name = value[ARRAY]
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"{path}: a callback state names the array {name!r}, not in it")
            return arrays[name]
        return {k: _decoded(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v, arrays, path) for v in value]
    return value


def split_hooks(callbacks: Sequence[Any]) -> tuple[list, list, list]:
    """The callbacks' ``on_train_begin``, epoch and ``on_train_end`` hooks, in their order.

    Raises
    ------
    TypeError
        A callback that is neither callable nor has ``on_epoch_end``.
    """
    begin, epoch_end, end = [], [], []
    for cb in callbacks:
        if hasattr(cb, "on_epoch_end"):
            begin.append(getattr(cb, "on_train_begin", None))
            epoch_end.append(cb.on_epoch_end)
            end.append(getattr(cb, "on_train_end", None))
        elif callable(cb):
            epoch_end.append(cb)
        else:
            raise TypeError(f"a callback must be callable or have on_epoch_end, got {cb!r}")
    return [b for b in begin if b], epoch_end, [e for e in end if e]


def _state_key(callback: Any) -> str:
    key = getattr(callback, "state_key", None)
    return key if isinstance(key, str) else type(callback).__qualname__


def _check_monitors(callbacks: Sequence[Any], has_validation: bool, loss: str) -> None:
    """Refuse a built-in callback monitoring a validation metric that the fit will not log."""
    from ..callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

    for cb in callbacks:
        if not isinstance(cb, EarlyStopping | ModelCheckpoint | ReduceLROnPlateau):
            continue
        if isinstance(cb, ModelCheckpoint) and not cb.save_best_only:
            continue
        if cb.monitor in _VALIDATION_KEYS and not has_validation:
            raise ValueError(
                f"{type(cb).__name__} monitors {cb.monitor!r}, which fit logs only with "
                "validation data: pass validation_data=(X_val, y_val), or monitor 'loss'"
            )
        if cb.monitor == "val_accuracy" and loss not in CLASSIFICATION_LOSSES:
            raise ValueError(
                f"{type(cb).__name__} monitors 'val_accuracy', which a {loss} model "
                "does not log (its validation_data gives val_loss)"
            )


class CallbackStates:
    """The fit's stateful callbacks by key, the states a checkpoint holds for them, and the
    callbacks that scale the learning rate.

    Made before the model is touched: a saved state that a built-in callback refuses is
    refused here, so a resume does not fail half-way.

    Raises
    ------
    ValueError
        A monitored validation metric without validation data, or a malformed saved state.
    """

    def __init__(
        self,
        callbacks: Sequence[Any],
        model: Any,
        ck: dict[str, Any] | None,
        path: Any,
        has_validation: bool,
    ) -> None:
        self.callbacks = callbacks = list(callbacks)  # a generator is iterated once
        _check_monitors(callbacks, has_validation, model.loss)
        self.keyed: dict[str, Any] = {}
        for cb in callbacks:
            if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
                key = base = _state_key(cb)
                n = 2
                while key in self.keyed:  # the same callback twice: told apart by order
                    key, n = f"{base}#{n}", n + 1
                self.keyed[key] = cb
        self.rates = [cb for cb in callbacks if callable(getattr(cb, "lr_factor", None))]
        saved = {} if ck is None else ck["state"].get("callbacks", {})
        self.saved = {key: saved[key] for key in self.keyed if key in saved}
        self.path = None if path is None else os.fspath(path)
        for key, state in self.saved.items():
            check = getattr(self.keyed[key], "_checked_state", None)  # the built-ins' checks
            if check is not None:
                self._named(key, check, state, model)

    def _named(self, key: str, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except (ValueError, TypeError) as exc:
            where = f"{self.path}: the state of callback {key}"
            raise ValueError(f"{where} is malformed: {exc}") from None

    def restore(self) -> None:
        """Give each callback its saved state (after ``on_train_begin``)."""
        for key, state in self.saved.items():
            self._named(key, self.keyed[key].load_state_dict, state)

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The states as the checkpoint's JSON holds them, and their arrays."""
        arrays: dict[str, np.ndarray] = {}
        states = {key: encode_state(cb.state_dict(), arrays, key) for key, cb in self.keyed.items()}
        return states, arrays

    def lr_factor(self, base_lr: float) -> float | None:
        """The product of the callbacks' factors for the next epoch; ``None`` without any.

        Raises
        ------
        ValueError
            A factor that is negative, NaN or infinite.
        """
        if not self.rates:
            return None
        factor = 1.0
        for cb in self.rates:
            part = float(cb.lr_factor(base_lr))
            if not (math.isfinite(part) and part >= 0):
                raise ValueError(f"{cb!r}.lr_factor({base_lr}) returned {part}, not a factor")
            factor *= part
        return factor
