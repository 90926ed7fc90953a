"""The ``mlp-accel`` command: train, predict, backends.

Every expected failure (bad input, unknown names, unusable backends, unreadable files, a
diverging run) becomes one line on stderr and a non-zero exit, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main", "build_parser"]

PROG = "mlp-accel"
EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _name_list(text: str) -> list[str]:
    return [t for t in text.replace(" ", "").split(",") if t]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlp-accel``."""
    from .data import DATASETS

    parser = _Parser(prog=PROG, description="Train multilayer perceptrons on NumPy, Numba or CuPy.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    backend_help = "backend: auto, numpy, numba or cupy (default: $MLP_ACCEL_BACKEND or auto)"
    default_backend = os.environ.get("MLP_ACCEL_BACKEND", "auto")

    t = sub.add_parser("train", help="train a model (default: the tutorial's circles problem)")
    t.add_argument("--backend", default=default_backend, help=backend_help)
    _add_gpu_options(t)
    src = t.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset", default="circles", choices=DATASETS, help="built-in dataset (default circles)"
    )
    src.add_argument(
        "--data",
        metavar="FILE",
        help="CSV with a header (last column the target), .npy or .npz (X, y)",
    )
    t.add_argument(
        "--task",
        choices=("binary", "multiclass", "regression"),
        help="task of --data (default: guessed)",
    )
    t.add_argument(
        "--layers",
        type=_int_list,
        help="widths, e.g. 2,4,3,1 (default: 2,4,3,1 for 2-D data, else n_in,64,n_out)",
    )
    t.add_argument(
        "--activations", type=_name_list, help="per weight layer, e.g. relu,relu,sigmoid"
    )
    t.add_argument(
        "--loss",
        help="binary_cross_entropy, cross_entropy or squared_error (default: from the task)",
    )
    t.add_argument("--epochs", type=int, default=300, help="passes over the data (default 300)")
    t.add_argument(
        "--batch-size", type=int, default=None, help="rows per step (default: full batch)"
    )
    t.add_argument("--optimizer", default="adam", help="adam or sgd (default adam)")
    t.add_argument("--lr", type=float, default=0.03, help="learning rate (default 0.03)")
    t.add_argument("--momentum", type=float, default=0.9, help="momentum for sgd (default 0.9)")
    t.add_argument("--init", default="glorot", help="he, glorot or normal (default glorot)")
    t.add_argument("--dtype", default="float32", help="float32 or float64 (default float32)")
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds data, split, initial weights and shuffles (default 0)",
    )
    t.add_argument("--test-size", type=float, default=0.25, help="held-out fraction (default 0.25)")
    t.add_argument("--save", metavar="FILE", help="save the trained model (.npz)")
    t.add_argument(
        "--plot", metavar="FILE.png", help="loss curve (and decision boundary for 2-D data)"
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = sub.add_parser("predict", help="predict with a saved model")
    p.add_argument("--model", required=True, metavar="FILE", help="a model saved by train --save")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="features: CSV with a header, .npy or .npz (X)",
    )
    p.add_argument("--out", metavar="FILE", help="write predictions here (CSV) instead of stdout")
    p.add_argument("--proba", action="store_true", help="output class probabilities")
    p.add_argument("--backend", default=default_backend, help=backend_help)
    _add_gpu_options(p)

    b = sub.add_parser("backends", help="list the backends, whether they work here, and why not")
    b.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    _add_gpu_options(b)
    return parser


def _add_gpu_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=int,
        default=None,
        metavar="N",
        help="GPU index for the cupy backend (default: $MLP_ACCEL_DEVICE or 0)",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="let cupy's float32 matrix products use TF32 tensor cores: faster, but inputs "
        "rounded to 10 mantissa bits (default: off)",
    )


def _apply_gpu_options(args: argparse.Namespace) -> None:
    """Hand --device and --tf32 to the cupy backend, which reads them when it starts."""
    device = getattr(args, "device", None)
    if device is not None:
        if device < 0:
            raise ValueError(f"--device must be a GPU index (0, 1, ...), got {device}")
        os.environ["MLP_ACCEL_DEVICE"] = str(device)
    if getattr(args, "tf32", False):
        os.environ["MLP_ACCEL_TF32"] = "1"


# -- train -------------------------------------------------------------------------------------
def _guess_task(y: np.ndarray) -> str:
    values = np.unique(y)
    if np.all(np.mod(values, 1) == 0) and len(values) <= max(2, min(50, len(y) // 5)):
        return "binary" if len(values) == 2 else "multiclass"
    return "regression"


def _default_layers(n_in: int, n_out: int) -> list[int]:
    return [2, 4, 3, 1] if (n_in, n_out) == (2, 1) else [n_in, 64, n_out]


def _cmd_train(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from .data import Standardizer, load_dataset, load_file, train_test_split

    if args.data:
        X, y = load_file(args.data)
        task = args.task or _guess_task(y)
    else:
        X, y, task = load_dataset(args.dataset, seed=args.seed)
    extras: dict[str, Any] = {}
    if task != "regression":
        classes, y = np.unique(y, return_inverse=True)
        extras["classes"] = classes
        if task == "binary" and len(classes) != 2:
            raise ValueError(f"--task binary needs 2 classes, found {len(classes)}")
        n_out = 1 if task == "binary" else len(classes)
    else:
        n_out = 1
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=args.test_size, seed=args.seed, stratify=task != "regression"
    )
    scaler = Standardizer().fit(np.asarray(X_tr, dtype=np.float64))
    extras.update(x_mean=scaler.mean, x_scale=scaler.scale)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    if task == "regression":
        y_scaler = Standardizer().fit(np.asarray(y_tr, dtype=np.float64).reshape(-1, 1))
        extras.update(y_mean=y_scaler.mean, y_scale=y_scaler.scale)
        y_tr_fit = y_scaler.transform(np.asarray(y_tr, dtype=np.float64).reshape(-1, 1))
    else:
        y_tr_fit = y_tr

    layers = args.layers or _default_layers(X.shape[1], n_out)
    loss = args.loss or {"binary": "binary_cross_entropy", "multiclass": "cross_entropy"}.get(
        task, "squared_error"
    )
    model = ma.MLP(
        layers,
        args.activations,
        loss,
        backend=args.backend,
        dtype=args.dtype,
        seed=args.seed,
        init=args.init,
    )
    opt_kwargs: dict[str, Any] = {"lr": args.lr}
    if str(args.optimizer).lower() == "sgd":
        opt_kwargs["momentum"] = args.momentum
    optimizer = ma.optim.get_optimizer(args.optimizer, **opt_kwargs)

    t0 = time.perf_counter()
    history = ma.fit(
        model,
        X_tr,
        y_tr_fit,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    samples_per_sec = len(X_tr) * history.n_epochs / history.wall_time

    if task == "regression":
        from sklearn.metrics import r2_score

        def score(Xs: np.ndarray, ys: np.ndarray) -> float:
            pred = model.predict(Xs) * y_scaler.scale[0] + y_scaler.mean[0]
            return float(r2_score(ys, pred))

        metric = "R2"
    else:

        def score(Xs: np.ndarray, ys: np.ndarray) -> float:
            return float(np.mean(model.predict(Xs) == ys))

        metric = "accuracy"
    train_score, test_score = score(X_tr, y_tr), score(X_te, y_te)
    if args.save:
        ma.io.save(model, args.save, extras=extras)
    if args.plot:
        from .plotting import plot_training

        plot_training(args.plot, history, model, X_tr, y_tr if task != "regression" else None)
    print(
        f"train {metric} {train_score:.4f}  test {metric} {test_score:.4f}  "
        f"loss {history['loss'][-1]:.4f}  epochs {history.n_epochs}  wall {wall:.2f} s  "
        f"{samples_per_sec:,.0f} samples/s  [{model.backend.name}, {model.dtype}, "
        f"layers {'-'.join(map(str, model.layers))}]"
    )
    return 0


# -- predict -----------------------------------------------------------------------------------
def _cmd_predict(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from .data import load_file
    from .io import atomic_write, load_extras

    model = ma.load(args.model, backend=args.backend)
    extras = load_extras(args.model)
    X, _ = load_file(args.data, has_target=False)
    n_in = model.layers[0]
    if X.ndim == 2 and X.shape[1] == n_in + 1:
        X = X[:, :n_in]  # a training file: its last column is the target
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
        fmt = "%.6g" if np.issubdtype(np.asarray(out).dtype, np.floating) else "%d"
    out = np.asarray(out)
    out2 = out.reshape(len(out), -1)
    if args.out:
        atomic_write(args.out, lambda f: np.savetxt(f, out2, fmt=fmt, delimiter=","))
    else:
        np.savetxt(sys.stdout, out2, fmt=fmt, delimiter=",")
    return 0


# -- backends ----------------------------------------------------------------------------------
def _cmd_backends(args: argparse.Namespace) -> int:
    from .backends import AUTO_ORDER, backend_status, get_backend

    status = backend_status()
    for name, (works, info) in status.items():
        if works:
            details = ", ".join(f"{k} {v}" for k, v in info.items())
            print(f"{name:6s}  yes  {details}")
        else:
            print(f"{name:6s}  no   {info}")
    try:
        chosen = get_backend("auto").name
    except RuntimeError as exc:
        chosen = f"none ({exc})"
    print(f"auto -> {chosen}  (order: {', '.join(AUTO_ORDER)}; override with MLP_ACCEL_BACKEND)")
    return 0


_COMMANDS = {"train": _cmd_train, "predict": _cmd_predict, "backends": _cmd_backends}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlp-accel``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_gpu_options(args)
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
