"""``mlp-accel train``: prepare the data, build the model, fit it, report.

Each step lives in its own module (``_train_data``, ``_train_build``, ``_train_report``); this
one only orders them and owns the fit call, whose failures on a Dask cluster are named as such.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._dask import _close_dask
from ._options import _check_output_path
from ._train_build import build_model, build_optimizer, fit_options, resumed_epoch
from ._train_data import TrainingData, prepare_training_data
from ._train_parser import add_arguments
from ._train_report import report

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace, dask_client: Callable[[argparse.Namespace], Any]) -> int:
    """Train as the arguments say; ``dask_client(args)`` gives ``(client, cluster)`` or Nones."""
    import mlp_accel as ma

    if args.threads is not None:
        ma.set_threads(args.threads)
    if args.plot:
        from ..plotting import require_matplotlib

        require_matplotlib()  # before training, not after it, so no result is lost
        _check_output_path(args.plot, "--plot")
    _check_output_path(args.save, "--save")
    first_epoch = resumed_epoch(args) if args.resume else 0
    data = prepare_training_data(args)
    model = build_model(args, data)
    optimizer = build_optimizer(args, data.X_train.shape[0])
    history, wall = _fit(args, model, optimizer, data, dask_client)
    report(args, model, data, history, wall, first_epoch)
    return 0


def _fit(
    args: argparse.Namespace,
    model: Any,
    optimizer: Any,
    data: TrainingData,
    dask_client: Callable[[argparse.Namespace], Any],
) -> tuple[Any, float]:
    """``(history, seconds)`` of ``fit`` here or on the arguments' Dask cluster, closed after.

    The seconds are the fit's wall time, its setup included, but not the cluster's start.
    """
    import mlp_accel as ma

    X_fit, y_fit = data.X_train, data.y_fit
    client, cluster = dask_client(args)
    if client is not None and data.lazy:
        X_fit, y_fit = np.asarray(X_fit), np.asarray(y_fit)  # Dask takes in-memory arrays
    t0 = time.perf_counter()
    try:
        history = ma.fit(
            model, X_fit, y_fit, optimizer=optimizer, client=client, **fit_options(args, data)
        )
    except (ValueError, TypeError, ma.TrainingDivergedError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        if client is None:
            raise
        # Whatever a dying scheduler or worker raises (KeyError 'workers' from a retry,
        # CancelledError, CommClosedError, ...), the cause is the cluster, so say so.
        raise RuntimeError(
            f"the Dask cluster failed during training ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        _close_dask(client, cluster)
    return history, time.perf_counter() - t0
