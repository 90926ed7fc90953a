"""Training callbacks: early stopping, the best model's file, reduce-on-plateau, a CSV log.

A callback is a callable ``cb(epoch, logs) -> stop?`` or an object with any of
``on_train_begin(model)``, ``on_epoch_end(epoch, logs) -> stop?``, ``on_train_end()``.

Two optional methods, which the callbacks here have where they apply, tie a callback to the
training loop:

- ``state_dict() -> dict`` and ``load_state_dict(state)``: the state is written into every
  training checkpoint of :func:`~mlp_accel.fit` (``checkpoint=``) and given back, after
  ``on_train_begin``, when a fit resumes from it (``resume_from=``), so that a resumed run
  equals an uninterrupted one. The state holds JSON values (dicts with string keys, lists,
  strings, numbers, bools, ``None``) and NumPy arrays, never pickles. It is matched to the
  callback by ``state_key`` (default: the class name): a callback whose key the checkpoint
  does not hold starts afresh, a state no callback claims is left out.
- ``lr_factor(base_lr) -> float``: the learning rate of the next epoch's steps is the
  optimizer's base rate times the schedule's factor times this (the loop's training step
  stays the one writer of ``optimizer.lr``; see :class:`ReduceLROnPlateau`).

``monitor`` names a key of the epoch logs (``loss``, ``val_loss``, ``val_accuracy``, ...): one
they lack is a ``ValueError`` naming those they hold, raised by ``fit`` before the first epoch
for ``val_loss`` and ``val_accuracy`` without ``validation_data``.
"""

from __future__ import annotations

import math
import os
import typing

from . import _callback_support as _state
from ._validation import check_count as _check_count
from ._validation import check_real as _check_real

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "CSVLogger"]


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
        A key of the epoch logs.
    patience : int, default 10
    min_delta : float, default 0
        The least change that counts as an improvement.
    restore_best_weights : bool, default True
        At the end, put back the weights of the best epoch.
    mode : {"auto", "min", "max"}, default "auto"
        ``auto``: keys ending in ``loss`` are minimized, others maximized.

    Notes
    -----
    Its state (best value and epoch, the epochs waited, the best weights) is part of a
    training checkpoint: a resumed run stops where the uninterrupted one would have.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        mode: str = "auto",
    ) -> None:
        self.sign = _state.sign_of(monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.patience = _check_count(patience, "patience")
        self.min_delta = _check_real(min_delta, "min_delta", 0.0)
        self.restore_best_weights = restore_best_weights
        self.best = self.sign * math.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._wait = 0
        self._model: Any = None
        self._best_params: list[Any] | None = None

    @property
    def state_key(self) -> str:
        """The name of its state in a checkpoint: the class and the monitored key."""
        return f"EarlyStopping({self.monitor})"

    def on_train_begin(self, model: Any) -> None:
        """Reset the best value and the patience count for a new run of ``model``."""
        self._model = model
        self.best, self.best_epoch, self.stopped_epoch = self.sign * math.inf, 0, 0
        self._wait, self._best_params = 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Return True (stop) when ``monitor`` has not improved for ``patience`` epochs.

        Raises
        ------
        ValueError
            ``logs`` holds no ``monitor`` value (a ``val_*`` metric without validation data).
        """
        value = _state.monitored("EarlyStopping", self.monitor, logs)
        if _state.improves(self.sign, value, self.best, self.min_delta):
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

    def state_dict(self) -> dict[str, Any]:
        """Best value (``None`` before the first epoch) and epoch, epochs waited, best weights."""
        params = self._best_params
        return {
            "best": _state.best_out(self.best),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "wait": self._wait,
            "best_params": None
            if params is None
            else [self._model.backend.to_numpy(p).copy() for p in params],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state_dict` (after ``on_train_begin``); refuse a malformed one."""
        best, best_epoch, stopped, wait, params = self._checked_state(state, self._model)
        self.best, self.best_epoch, self.stopped_epoch, self._wait = best, best_epoch, stopped, wait
        if params is not None:
            backend, dtype = self._model.backend, self._model.dtype
            params = [backend.asarray(p, dtype) for p in params]
        self._best_params = params

    def _checked_state(self, state: Any, model: Any) -> tuple[Any, ...]:
        best, best_epoch, stopped, wait, params = _state.fields(
            state, "best", "best_epoch", "stopped_epoch", "wait", "best_params"
        )
        checked = (
            _state.best_in(best, self.sign),
            _state.count(best_epoch, "best_epoch"),
            _state.count(stopped, "stopped_epoch"),
            _state.count(wait, "wait"),
        )
        return (*checked, None if params is None else _state.weights(params, model))


class ModelCheckpoint(Callback):
    """Save the model to ``path`` whenever ``monitor`` improves (Keras's ``ModelCheckpoint``).

    The file is a plain model file (:func:`mlp_accel.io.save`, atomic): ``ma.load(path)`` gives
    the model of the best epoch so far, with its preprocessing, and
    ``ma.io.load_metadata(path)["model_checkpoint"]`` says which epoch that was:
    ``{"epoch", "monitor", "value"}``. Nothing is written before the first improvement.

    Parameters
    ----------
    path : path-like
        Written as given (no suffix is added, no ``{epoch}`` is formatted).
    monitor : str, default "val_loss"
        A key of the epoch logs.
    mode : {"auto", "min", "max"}, default "auto"
        ``auto``: keys ending in ``loss`` are minimized, others maximized.
    min_delta : float, default 0
        The least change that counts as an improvement.
    save_best_only : bool, default True
        False: save after every epoch, the last model whatever ``monitor`` says.

    Notes
    -----
    Its state (the best value and epoch) is part of a training checkpoint, so a resumed run
    replaces the file exactly when the uninterrupted one would have.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        save_best_only: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must name a file, got {path!r}")
        self.sign = _state.sign_of(monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.min_delta = _check_real(min_delta, "min_delta", 0.0)
        self.save_best_only = bool(save_best_only)
        self.best = self.sign * math.inf
        self.best_epoch = 0
        self._model: Any = None

    @property
    def state_key(self) -> str:
        """The name of its state in a checkpoint: the class, the file and the monitored key."""
        return f"ModelCheckpoint({os.path.normpath(self.path)}, {self.monitor})"

    def on_train_begin(self, model: Any) -> None:
        """Reset the best value for a new run of ``model``."""
        self._model = model
        self.best, self.best_epoch = self.sign * math.inf, 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Save the model when ``monitor`` improved (every epoch without ``save_best_only``).

        Raises
        ------
        ValueError
            ``logs`` holds no ``monitor`` value (with ``save_best_only``).
        """
        if not self.save_best_only:
            value = logs.get(self.monitor)
            self._save(epoch, None if value is None else float(value))
            return False
        value = _state.monitored("ModelCheckpoint", self.monitor, logs)
        if _state.improves(self.sign, value, self.best, self.min_delta):
            self.best, self.best_epoch = value, epoch
            self._save(epoch, value)
        return False

    def _save(self, epoch: int, value: float | None) -> None:
        from .io import save

        about = {"epoch": epoch, "monitor": self.monitor, "value": value}
        save(self._model, self.path, metadata={"model_checkpoint": about})

    def state_dict(self) -> dict[str, Any]:
        """The best value (``None`` before the first) and its epoch."""
        return {"best": _state.best_out(self.best), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state_dict` (after ``on_train_begin``); refuse a malformed one."""
        self.best, self.best_epoch = self._checked_state(state, self._model)

    def _checked_state(self, state: Any, model: Any) -> tuple[float, int]:
        best, best_epoch = _state.fields(state, "best", "best_epoch")
        return _state.best_in(best, self.sign), _state.count(best_epoch, "best_epoch")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    After ``patience`` epochs in a row without an improvement by more than ``min_delta`` (an
    absolute threshold, PyTorch's ``threshold_mode="abs"``), the rate is multiplied by
    ``factor`` (Keras's count: ``patience=2`` reduces on the second such epoch, PyTorch's on
    the third); the ``cooldown`` epochs after a reduction are not counted (PyTorch's reading:
    Keras leaves one fewer out). The rate never goes below ``min_lr``.

    It does not write ``optimizer.lr``: :func:`~mlp_accel.fit` asks :meth:`lr_factor` before
    every epoch and sets each step's rate to ``base_lr * schedule factor * lr_factor``, so the
    reduction composes with a schedule (:mod:`mlp_accel.schedules`) and ends with the fit (the
    optimizer keeps its base rate).

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs.
    factor : float, default 0.1
        In (0, 1).
    patience : int, default 10
    mode : {"auto", "min", "max"}, default "auto"
        ``auto``: keys ending in ``loss`` are minimized, others maximized.
    min_delta : float, default 1e-4
    cooldown : int, default 0
    min_lr : float, default 0
        The least rate the reductions reach, before a schedule's factor: ``base_lr *
        lr_factor`` stays at or above it (a base rate below it is never reduced).

    Notes
    -----
    Its state (best value, epochs waited, cooldown left, :attr:`current_factor`) is part of a
    training checkpoint: a resumed run has the uninterrupted run's rates, bit for bit.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        self.sign = _state.sign_of(monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.factor = _check_real(factor, "factor", 0.0, 1.0, low_open=True, high_open=True)
        self.patience = _check_count(patience, "patience")
        self.min_delta = _check_real(min_delta, "min_delta", 0.0)
        self.cooldown = _check_count(cooldown, "cooldown", 0)
        self.min_lr = _check_real(min_lr, "min_lr", 0.0)
        self.on_train_begin(None)

    @property
    def state_key(self) -> str:
        """The name of its state in a checkpoint: the class and the monitored key."""
        return f"ReduceLROnPlateau({self.monitor})"

    def on_train_begin(self, model: Any) -> None:
        """Start at the full rate: no reduction, nothing waited."""
        self.best = self.sign * math.inf
        #: The product of the reductions so far (1.0 before the first).
        self.current_factor = 1.0
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Count an epoch without improvement; reduce after ``patience`` of them.

        Raises
        ------
        ValueError
            ``logs`` holds no ``monitor`` value.
        """
        value = _state.monitored("ReduceLROnPlateau", self.monitor, logs)
        cooling = self.cooldown_counter > 0
        if cooling:
            self.cooldown_counter -= 1
        if _state.improves(self.sign, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        elif not cooling:
            self.wait += 1
            if self.wait >= self.patience:
                self.current_factor *= self.factor
                self.cooldown_counter, self.wait = self.cooldown, 0
        return False

    def lr_factor(self, base_lr: float) -> float:
        """The factor of the next epoch's rate: :attr:`current_factor`, kept at ``min_lr``."""
        return max(self.current_factor, min(1.0, self.min_lr / base_lr))

    def state_dict(self) -> dict[str, Any]:
        """Best value (``None`` before the first), epochs waited, cooldown left, factor."""
        return {
            "best": _state.best_out(self.best),
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "current_factor": self.current_factor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state_dict` (after ``on_train_begin``); refuse a malformed one."""
        checked = self._checked_state(state, None)
        self.best, self.wait, self.cooldown_counter, self.current_factor = checked

    def _checked_state(self, state: Any, model: Any) -> tuple[float, int, int, float]:
        best, wait, cooldown, factor = _state.fields(
            state, "best", "wait", "cooldown_counter", "current_factor"
        )
        factor = _state.real(factor, "current_factor")
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"current_factor {factor!r} is not in [0, 1]")
        wait, cooldown = _state.count(wait, "wait"), _state.count(cooldown, "cooldown")
        return _state.best_in(best, self.sign), wait, cooldown, factor


class CSVLogger(Callback):
    """Write the epoch logs to a CSV file as training goes: a header, then one row per epoch.

    The columns are ``epoch`` then the first epoch's other log keys in their order: for
    :func:`~mlp_accel.fit`, ``loss``, ``lr``, ``time``, ``samples_per_sec`` and, with validation
    data, ``val_loss`` and ``val_accuracy`` (a Dask fit adds its own). They are fixed by the
    first epoch: a later key is left out, a missing one is an empty cell. Numbers are written
    as Python's ``repr`` (the shortest text that reads back as the same float).

    After every epoch the whole file is rewritten atomically (:func:`mlp_accel.io.atomic_write`),
    so the file on disk is always a complete CSV, even if training is killed; a FIFO or
    character device (``/dev/stdout``) gets each line once instead. Nothing is written before
    the first epoch ends: a fit that fails earlier leaves an earlier file as it was.

    Parameters
    ----------
    path : path-like
    separator : str, default ","
    append : bool, default False
        Keep the rows of an existing file (which must have the same columns) and add this
        run's after them, without a second header.

    Notes
    -----
    Its state (the text written so far, the columns) is part of a training checkpoint: a
    resumed run writes the file the uninterrupted run would have, from the checkpoint's
    rows on (rows written after the checkpoint, by a run that was then killed, are replaced).
    """

    def __init__(
        self, path: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must name a file, got {path!r}")
        if not isinstance(separator, str) or len(separator) != 1 or separator in '\r\n"':
            raise ValueError(f"separator must be one character (not a quote), got {separator!r}")
        self.separator, self.append = separator, bool(append)
        self.columns: list[str] | None = None
        self._text, self._sent, self._stream = "", 0, False
        self._handle: typing.IO[bytes] | None = None

    @property
    def state_key(self) -> str:
        """The name of its state in a checkpoint: the class and the file."""
        return f"CSVLogger({os.path.normpath(self.path)})"

    def on_train_begin(self, model: Any) -> None:
        """Start the text: empty, or the existing file's with ``append``."""
        from ._atomic import is_stream

        self.on_train_end()
        self.columns, self._sent = None, 0
        self._stream = is_stream(self.path)
        self._text = _state.read_appended(self.path) if self.append and not self._stream else ""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        """Add the epoch's row and write the file.

        Raises
        ------
        ValueError
            With ``append``, the existing file's header is not this run's.
        OSError
            The file cannot be written (the earlier file stays whole).
        """
        text, columns = self._text, self.columns
        if columns is None:
            columns = ["epoch", *(key for key in logs if key != "epoch")]
            header = _state.csv_line(columns, self.separator)
            if not text:
                text = header
            elif text.splitlines(keepends=True)[0] != header:
                raise ValueError(
                    f"CSVLogger cannot append to {self.path}: its columns are "
                    f"{text.splitlines()[0]!r}, this run logs {header.strip()!r}; pass "
                    "append=False or another path"
                )
        row = [epoch if key == "epoch" else logs.get(key, "") for key in columns]
        text += _state.csv_line(row, self.separator)
        from ._atomic import atomic_write

        new = (text[self._sent :] if self._stream else text).encode("utf-8")

        def write(f: typing.IO[bytes]) -> None:
            f.write(new)
            f.flush()

        if self._stream:  # open for the whole fit: one end of file, when training ends
            self._handle = self._handle or open(self.path, "wb")
            write(self._handle)
        else:
            atomic_write(self.path, write)
        self._text, self.columns = text, columns
        self._sent = len(text) if self._stream else 0
        return False

    def on_train_end(self) -> None:
        """Close a stream kept open since the first epoch."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}  # an open stream stays with this process

    def state_dict(self) -> dict[str, Any]:
        """The file's text so far and its columns (``None`` before the first epoch)."""
        return {"text": self._text, "columns": self.columns}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state_dict` (after ``on_train_begin``); refuse a malformed one."""
        self._text, self.columns = self._checked_state(state, None)
        # A stream got the checkpoint's lines from the run that wrote them.
        self._sent = len(self._text) if self._stream else 0

    def _checked_state(self, state: Any, model: Any) -> tuple[str, list[str] | None]:
        return _state.csv_state(state)


# The namespace holds __all__ and modules only: the __future__ import binds a name too.
del annotations
