"""``mlp-accel predict``: a saved model's predictions for the rows of a file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from ._options import _add_gpu_options

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add predict's arguments to its parser ``p``; ``--backend`` takes ``backend_option``."""
    p.add_argument("--model", required=True, metavar="FILE", help="a model saved by train --save")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="features: CSV (header row optional), .npy or .npz (X); one extra last column "
        "(a training file's target) is ignored",
    )
    p.add_argument("--out", metavar="FILE", help="write predictions here (CSV) instead of stdout")
    p.add_argument("--proba", action="store_true", help="output class probabilities")
    p.add_argument("--backend", **backend_option)
    _add_gpu_options(p)


def run(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from ..data import load_file
    from ..io import atomic_write, load_extras

    model = ma.load(args.model, backend=args.backend)
    extras = load_extras(args.model)
    # Checked against the model (columns, real numbers, finite) before anything touches X.
    X, _ = load_file(args.data, has_target=False, n_features=model.layers[0])
    if "x_mean" in extras:
        X = (np.asarray(X, dtype=np.float64) - extras["x_mean"]) / extras["x_scale"]
    if args.proba:
        out = model.predict_proba(X)
        fmt = "%.6g"
    else:
        out = model.predict(X)
        if "classes" in extras and model.loss != "squared_error":
            out = extras["classes"][out]
        if "y_mean" in extras:
            out = out * extras["y_scale"][0] + extras["y_mean"][0]
        kind = np.asarray(out).dtype.kind
        fmt = "%.6g" if kind == "f" else "%s" if kind in "US" else "%d"
    out = np.asarray(out)
    out2 = out.reshape(len(out), -1)
    # A header row names the columns (comments="" keeps numpy's "# " off it).
    table = dict(fmt=fmt, delimiter=",", header=_header(args.proba, extras, out2.shape[1]))
    if args.out:
        atomic_write(
            args.out,
            lambda f: np.savetxt(f, out2, comments="", encoding="utf-8", **table),
        )
    else:
        np.savetxt(sys.stdout, out2, comments="", **table)
    return 0


def _header(proba: bool, extras: dict, columns: int) -> str:
    """Column names: ``prediction``, or ``proba_<class>`` per probability column.

    One probability column (a sigmoid output) is the probability of the second class.
    """
    if not proba:
        return "prediction"
    classes = [str(c) for c in extras.get("classes", range(max(columns, 2)))]
    named = classes[-1:] if columns == 1 else classes[:columns]
    return ",".join(f"proba_{c}" for c in named)
