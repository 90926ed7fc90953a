"""``mlp-accel predict``: a saved model's predictions for the rows of a file.

The predictions are the loaded model's own ``predict`` (or ``predict_proba``): the model file
carries its feature scaling, class labels and column names, and :func:`mlp_accel.load` gives
them back to the model, so this command and ``ma.load(FILE).predict(X)`` are one thing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from ._options import (
    _add_gpu_options,
    _add_header_option,
    _check_distinct_paths,
    _check_output_path,
)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add predict's arguments to its parser ``p``; ``--backend`` takes ``backend_option``."""
    p.add_argument("--model", required=True, metavar="FILE", help="a model saved by train --save")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="features: CSV (header row optional; a header's columns are matched to the "
        "model's by name when it was trained on a headed CSV), .npy or .npz (X); one extra "
        "last column (a training file's target) is ignored",
    )
    _add_header_option(p)
    p.add_argument("--out", metavar="FILE", help="write predictions here (CSV) instead of stdout")
    p.add_argument("--proba", action="store_true", help="output class probabilities")
    p.add_argument("--backend", **backend_option)
    _add_gpu_options(p)


def run(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from ..data import load_file
    from ..io import atomic_write

    _check_output_path(args.out, "--out")
    _check_distinct_paths({"--out": args.out}, {"--model": args.model, "--data": args.data})
    model = ma.load(args.model, backend=args.backend)
    pre = model.preprocessing
    # Checked against the model (columns, real numbers, finite) before anything touches X.
    X, _ = load_file(
        args.data,
        has_target=False,
        n_features=model.layers[0],
        header=args.header,
        feature_names=None if pre is None else pre.feature_names,
        target_name=None if pre is None else pre.target_name,
    )
    if args.proba:
        out = model.predict_proba(X)
        fmt = "%.6g"
    else:
        out = model.predict(X)
        kind = np.asarray(out).dtype.kind
        fmt = "%.6g" if kind == "f" else "%s" if kind in "US" else "%d"
    out = np.asarray(out)
    out2 = out.reshape(len(out), -1)
    # A header row names the columns (comments="" keeps numpy's "# " off it).
    classes = None if pre is None else pre.classes
    table = dict(fmt=fmt, delimiter=",", header=_header(args.proba, classes, out2.shape[1]))
    if args.out is not None:
        atomic_write(
            args.out,
            lambda f: np.savetxt(f, out2, comments="", encoding="utf-8", **table),
        )
    else:
        np.savetxt(sys.stdout, out2, comments="", **table)
    return 0


def _header(proba: bool, classes: Any, columns: int) -> str:
    """Column names: ``prediction``, or ``proba_<class>`` per probability column.

    One probability column (a sigmoid output) is the probability of the second class.
    """
    if not proba:
        return "prediction"
    labels = range(max(columns, 2)) if classes is None else classes
    classes = [str(c) for c in labels]
    named = classes[-1:] if columns == 1 else classes[:columns]
    return ",".join(f"proba_{c}" for c in named)
