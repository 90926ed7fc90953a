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
from ._options import _check_distinct_paths, _check_output_path
from ._train_build import build_model, build_optimizer, fit_options, resumed_epoch
from ._train_data import TrainingData, prepare_training_data
from ._train_parser import DEFAULT_LR, add_arguments
from ._train_report import report

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace, dask_client: Callable[[argparse.Namespace], Any]) -> int:
    """Train as the arguments say; ``dask_client(args)`` gives ``(client, cluster)`` or Nones."""
    import mlp_accel as ma

    if args.threads is not None:
        ma.set_threads(args.threads)
    if args.plot is not None:
        from ..plotting import plot_format, require_matplotlib

        require_matplotlib()  # before training, not after it, so no result is lost
        _check_output_path(args.plot, "--plot")
        plot_format(args.plot)  # an unknown suffix too
    outputs = {
        "--save": args.save,
        "--save-best": args.save_best,
        "--csv-log": args.csv_log,
        "--checkpoint": args.checkpoint,
    }
    for what, path in outputs.items():
        _check_output_path(path, what)
    _check_distinct_paths({**outputs, "--plot": args.plot}, {"--data": args.data})
    first_epoch = resumed_epoch(args) if args.resume else 0
    data = prepare_training_data(args)
    if args.lr is None:
        args.lr = DEFAULT_LR["regression" if data.task == "regression" else "classification"]
    model = build_model(args, data)
    if args.resume:
        _check_resume_fits(args.resume, model.preprocessing)
    optimizer = build_optimizer(args, data.X_train.shape[0])
    history, wall = _fit(args, model, optimizer, data, dask_client)
    report(args, model, data, history, wall, first_epoch)
    return 0


# What each array of a preprocessing is, for saying which of them a checkpoint does not share.
_WHAT = {
    "x_mean": "feature statistics",
    "x_scale": "feature statistics",
    "classes": "class labels",
    "y_mean": "target scaling",
    "y_scale": "target scaling",
    "feature_names": "column names",
}


def _check_resume_fits(path: str, preprocessing: Any) -> None:
    """Refuse a checkpoint at ``path`` that does not fit this run's data.

    Its weights were trained on rows and labels mapped by its own preprocessing; this run maps
    the data by one computed from --data or --dataset and the split: they must be the same.
    A file that is no checkpoint, or a malformed one, is left to ``fit`` to name.
    """
    import mlp_accel as ma

    from ..preprocessing import Preprocessing

    state = ma.io.load_metadata(path).get("checkpoint")
    if not isinstance(state, dict):
        return
    try:
        theirs = Preprocessing.from_arrays(ma.io.load_extras(path))
    except ValueError:
        return
    if theirs is None:
        raise ValueError(
            f"--resume {path}: the checkpoint holds no feature scaling or class labels, so its "
            "weights cannot be matched to this run's rows; resume it in Python with "
            "mlp_accel.fit(model, X, y, resume_from=...)"
        )
    if not preprocessing.same_as(theirs):
        mine, other = preprocessing.arrays(), theirs.arrays()
        differ = sorted(
            {
                _WHAT[k]
                for k in _WHAT
                if (k in mine) != (k in other)
                or (k in mine and not np.array_equal(mine[k], other[k]))
            }
        )
        raise ValueError(
            f"--resume {path}: the checkpoint was trained with other {' and '.join(differ)} "
            "than this run's data gives; resume with the same --data or --dataset, --seed and "
            "--test-size"
        )


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

    # Raw rows and labels: the model's preprocessing maps them, batch by batch on a memory map.
    X_fit, y_fit = data.X_train, data.y_train
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
