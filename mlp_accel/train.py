"""The minibatch training loop: shuffling, divergence checks, validation, history, callbacks.

Data is validated and moved to the device once; each epoch it is permuted on the device and
cut into contiguous batches. Losses stay on the device until the end of the epoch, so a GPU
is synchronized once per epoch, not once per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from .model import MLP
from .optim import Adam, Optimizer

__all__ = ["fit", "History", "TrainingDivergedError"]

Array = Any


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the model keeps its last finite weights."""


class History(dict):
    """Per-epoch records of a :func:`fit` run, as lists keyed by metric name.

    Keys: ``loss`` (mean training loss of the epoch's steps), ``time`` (seconds),
    ``samples_per_sec``, and with validation data ``val_loss`` and, for classification,
    ``val_accuracy``.
    """

    @property
    def n_epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.get("loss", []))

    @property
    def wall_time(self) -> float:
        """Seconds spent in the epochs, summed."""
        return float(sum(self.get("time", [])))

    def append(self, **logs: float) -> None:
        """Record one epoch."""
        for key, value in logs.items():
            self.setdefault(key, []).append(value)


def accuracy_device(model: MLP, X: Array, y: Array) -> float:
    """Classification accuracy on device data (one-hot or 0/1 targets)."""
    xp = model.backend.xp
    out = model.forward_device(X)
    if model.activations[-1] == "softmax":
        hits = xp.argmax(out, axis=1) == xp.argmax(y, axis=1)
    else:
        hits = (out > 0.5) == (y > 0.5)
    return float(model.backend.to_numpy(xp.mean(xp.astype(hits, out.dtype))))


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def fit(
    model: MLP,
    X: Any,
    y: Any,
    *,
    epochs: int = 100,
    batch_size: int | None = None,
    optimizer: Optimizer | None = None,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    progress: bool = False,
    callbacks: Sequence[Callable[[int, dict[str, float]], bool | None]] = (),
) -> History:
    """Train ``model`` in place with minibatch gradient descent.

    Parameters
    ----------
    model : MLP
        The model; its backend runs every step.
    X, y : array-like
        Training data (host arrays; validated and moved to the device once).
    epochs : int, default 100
        Passes over the data.
    batch_size : int, optional
        Rows per step; ``None`` trains on the full batch.
    optimizer : Optimizer, optional
        Default ``Adam(lr=1e-3)``. Its state carries over between calls.
    shuffle : bool, default True
        Reshuffle the rows every epoch (with the model's generator).
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch.
    progress : bool, default False
        Show a progress bar (tqdm) with the loss and samples/s.
    callbacks : sequence of callables
        ``callback(epoch, logs)`` after every epoch; returning True stops training.

    Returns
    -------
    History
        Per-epoch loss, time, samples/s and validation metrics.

    Raises
    ------
    TrainingDivergedError
        If the loss becomes NaN or infinite; the model is left with the weights it had at
        the start of that epoch.
    """
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size", allow_none=True)
    optimizer = Adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be an mlp_accel.optim.Optimizer, got {type(optimizer).__name__}"
        )
    backend = model.backend
    Xd, yd = model.prepare(X, y)
    val = model.prepare(*validation_data) if validation_data is not None else None
    classify = model.loss != "squared_error"
    n = Xd.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    starts = range(0, n, bs)

    history = History()
    epoch_iter: Any = range(1, epochs + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(epoch_iter, unit="epoch", dynamic_ncols=True, leave=False)
        epoch_iter = bar
    for epoch in epoch_iter:
        t0 = time.perf_counter()
        snapshot = [backend.copy(p) for p in model.params]
        if shuffle and bs < n:
            order = backend.index_array(model.rng.permutation(n))
            Xe, ye = backend.take_rows(Xd, order), backend.take_rows(yd, order)
        else:
            Xe, ye = Xd, yd
        total = None
        for start in starts:
            stop = min(start + bs, n)  # the standard leaves out-of-range slice stops undefined
            loss_sum = model.train_step(Xe[start:stop, :], ye[start:stop, :], optimizer)
            total = loss_sum if total is None else total + loss_sum
        loss = float(backend.to_numpy(total)) / n
        elapsed = time.perf_counter() - t0
        if not math.isfinite(loss):
            model.set_params(snapshot)
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss} in epoch {epoch}; the model keeps "
                f"its weights from before that epoch. Lower the learning rate (now "
                f"{optimizer.lr:g}), scale the inputs, or use float64."
            )
        logs = {"loss": loss, "time": elapsed, "samples_per_sec": n / elapsed}
        if val is not None:
            logs["val_loss"] = float(backend.to_numpy(model.loss_sum(*val))) / val[0].shape[0]
            if classify:
                logs["val_accuracy"] = accuracy_device(model, *val)
        history.append(**logs)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4g}", samples_s=f"{n / elapsed:.3g}", refresh=False)
        if any(cb(epoch, logs) for cb in callbacks):
            break
    if bar is not None:
        bar.close()
    return history
