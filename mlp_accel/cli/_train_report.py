"""The report of ``mlp-accel train``: the result line, then the saved model and the plot."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._train_data import _LAZY_ROWS, TrainingData


def _throughput(history: Any, first_epoch: int) -> tuple[int, float]:
    """Rows trained and seconds spent in training epochs, over the epochs of this run.

    Per-epoch rates are not averaged: the rate of a run is its rows over its seconds.
    """
    rows = 0.0
    seconds = 0.0
    for epoch, rate, elapsed in zip(history["epoch"], history["samples_per_sec"], history["time"]):
        if epoch > first_epoch:
            rows += rate * elapsed
            seconds += elapsed
    return round(rows), seconds


def _scorer(model: Any, data: TrainingData) -> tuple[str, Callable[[Any, Any], float]]:
    """The metric's name and ``score(X, y)`` of raw rows: R2 in the target's units, or
    accuracy over the user's labels (the model's preprocessing maps both ways)."""
    if data.task == "regression":
        from sklearn.metrics import r2_score

        def score(Xs: np.ndarray, ys: np.ndarray) -> float:
            return float(r2_score(ys, model.predict(Xs)))

        return "R2", score

    def accuracy(Xs: np.ndarray, ys: np.ndarray) -> float:
        return float(np.mean(model.predict(Xs) == ys))

    return "accuracy", accuracy


def _path(history: Any, model: Any) -> str:
    """The backend and kernel tier the fit ran: ``numba generic``, ``numpy``."""
    path = history.code_path
    if path is None or (path["tier"] == "layers" and path["backend"] != "numba"):
        return model.backend.name
    return f"{path['backend']} {path['tier']}"


def _why(history: Any, model: Any) -> str:
    """Which backend (``auto``'s choice) and kernel tier the fit ran, and why."""
    path = history.code_path
    if path is not None:
        auto = "auto chose " if model.backend_choice is not None else ""
        return f"{auto}{path['backend']} (tier: {path['tier']}): {path['reason']}"
    return f"auto chose {model.backend_choice}"


def report(
    args: argparse.Namespace,
    model: Any,
    data: TrainingData,
    history: Any,
    wall: float,
    first_epoch: int,
) -> None:
    """Print the result line (and Dask's costs), then save the model and write the plot."""
    rows, seconds = _throughput(history, first_epoch)
    metric, score = _scorer(model, data)
    if data.lazy:
        # Score on at most 100,000 training rows: the rest stays on disk.
        n_score = min(data.X_train.shape[0], _LAZY_ROWS)
        train_score = score(np.asarray(data.X_train[:n_score]), np.asarray(data.y_train[:n_score]))
    else:
        train_score = score(data.X_train, data.y_train)
    test_score = score(data.X_test, data.y_test)
    # The result lines come first, so that a failing save or plot cannot lose them; the
    # result line is the last of them, for scripts that read it.
    if model.backend_choice is not None or history.code_path is not None:
        print(f"code path: {_why(history, model)}")
    print(
        f"train {metric} {train_score:.4f}  test {metric} {test_score:.4f}  "
        f"loss {history['loss'][-1]:.4f}  epochs {history.n_epochs}  "
        f"trained {rows:,} samples in {seconds:.2f} s = {rows / max(seconds, 1e-12):,.0f} "
        f"samples/s  "
        f"(fit wall {wall:.2f} s incl. setup)  [{_path(history, model)}, {model.dtype}, "
        f"layers {'-'.join(map(str, model.layers))}]"
    )

    if "compute_time" in history:
        steps = max(sum(history["steps"]), 1)
        where = f"{args.dask_workers} local workers" if args.dask_workers else args.scheduler
        print(
            f"dask {where}: per step compute {sum(history['compute_time']) / steps * 1e3:.2f} ms, "
            f"communication {sum(history['comm_time']) / steps * 1e3:.2f} ms, "
            f"{sum(history['bytes_sent']) / steps / 2**20:.2f} MiB sent"
        )
    sys.stdout.flush()
    if args.save is not None:
        from ..io import save

        save(model, args.save)  # with the model's preprocessing: raw rows and labels in
    if args.plot is not None:
        from ..plotting import plot_training

        # Raw test rows (the axes are the user's features), coloured by class index.
        y_plot = model.preprocessing.targets(data.y_test) if data.task != "regression" else None
        plot_training(args.plot, history, model, data.X_test, y_plot)
