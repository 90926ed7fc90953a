"""The ``mlp-accel`` command: train, predict, backends, bench.

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
        "--activations",
        type=_name_list,
        help="per weight layer, e.g. relu,gelu,sigmoid (any built-in or registered name)",
    )
    t.add_argument(
        "--loss",
        help=(
            "binary_cross_entropy, cross_entropy, squared_error or poisson (default: from the task)"
        ),
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
    t.add_argument("--alpha", type=float, default=0.0, help="L2 penalty on the weights (default 0)")
    t.add_argument(
        "--schedule", default="constant", help="constant, step or cosine (default constant)"
    )
    t.add_argument(
        "--warmup", type=float, default=0.0, help="epochs of linear learning-rate warmup"
    )
    t.add_argument("--scale-lr", action="store_true", help="linear scaling rule: lr * batch / 256")
    t.add_argument("--clip-norm", type=float, default=None, help="clip the global gradient norm")
    t.add_argument(
        "--accumulate", type=int, default=1, help="micro-batches per step (gradient accumulation)"
    )
    t.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs",
    )
    t.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of the training split held out for --early-stopping (default 0.1)",
    )
    t.add_argument("--checkpoint", metavar="FILE", help="write a training checkpoint here")
    t.add_argument(
        "--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default 1)"
    )
    t.add_argument("--resume", metavar="FILE", help="resume training from a checkpoint")
    t.add_argument("--save", metavar="FILE", help="save the trained model (.npz)")
    t.add_argument(
        "--plot", metavar="FILE.png", help="loss curve (and decision boundary for 2-D data)"
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    dask_opts = t.add_mutually_exclusive_group()
    dask_opts.add_argument(
        "--dask-workers",
        type=int,
        metavar="N",
        help="train data-parallel on a local Dask cluster of N worker processes",
    )
    dask_opts.add_argument(
        "--scheduler", metavar="ADDRESS", help="train data-parallel on this Dask scheduler"
    )
    t.add_argument(
        "--local-steps",
        type=int,
        default=1,
        help="with Dask: local SGD steps between weight averages (not exact; default 1)",
    )

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
    _add_bench_parser(sub)
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


def _split_lazy(X: Any, y: Any, test_size: float, seed: int) -> tuple[Any, ...]:
    """Train/test split of a memory map without reading it: the last rows are the test set
    (at most 100,000), and the standardization comes from a random sample of training rows."""
    from .batches import ScaledRows
    from .data import Standardizer

    n = X.shape[0]
    n_test = min(max(1, round(test_size * n)), 100_000)
    n_train = n - n_test
    rows = np.sort(
        np.random.default_rng(seed).choice(n_train, min(n_train, 100_000), replace=False)
    )
    scaler = Standardizer().fit(np.asarray(X[rows], dtype=np.float64))
    X_te = scaler.transform(np.asarray(X[n_train:], dtype=np.float64))
    return (
        ScaledRows(X[:n_train], scaler.mean, scaler.scale),
        X_te,
        y[:n_train],
        np.asarray(y[n_train:]),
        scaler,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from .data import Standardizer, load_dataset, load_file, train_test_split

    lazy = False
    if args.data:
        from sklearn.utils import check_X_y

        X, y = load_file(args.data, mmap=True)
        lazy = isinstance(X, np.memmap)
        if not lazy:
            # Validate before splitting, so bad data is named as such, not as a split failure.
            X, y = check_X_y(X, y, dtype=np.float64, ensure_all_finite=True, y_numeric=True)
        task = args.task or _guess_task(np.unique(y))
    else:
        X, y, task = load_dataset(args.dataset, seed=args.seed)
    extras: dict[str, Any] = {}
    if task != "regression":
        classes = np.unique(y)
        if lazy:
            if not np.array_equal(classes, np.arange(len(classes))):
                raise ValueError("a memory-mapped --data file needs class labels 0..k-1")
        else:
            classes, y = np.unique(y, return_inverse=True)
        extras["classes"] = classes
        if task == "binary" and len(classes) != 2:
            raise ValueError(f"--task binary needs 2 classes, found {len(classes)}")
        n_out = 1 if task == "binary" else len(classes)
    else:
        n_out = 1
    if lazy:
        X_tr, X_te, y_tr, y_te, scaler = _split_lazy(X, y, args.test_size, args.seed)
    else:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=args.test_size, seed=args.seed, stratify=task != "regression"
        )
        scaler = Standardizer().fit(np.asarray(X_tr, dtype=np.float64))
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    extras.update(x_mean=scaler.mean, x_scale=scaler.scale)
    if task == "regression":
        y_sample = np.asarray(y_tr[:100_000] if lazy else y_tr, dtype=np.float64).reshape(-1, 1)
        # Poisson targets are counts for an exp output: kept as they are, not standardized.
        if args.loss == "poisson":
            y_scaler = Standardizer(np.zeros(1), np.ones(1))
        else:
            y_scaler = Standardizer().fit(y_sample)
        extras.update(y_mean=y_scaler.mean, y_scale=y_scaler.scale)
        if lazy:
            from .batches import ScaledRows

            y_tr_fit = ScaledRows(y_tr.reshape(-1, 1), y_scaler.mean, y_scaler.scale)
        else:
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
    lr = args.lr
    if args.scale_lr:
        lr = ma.schedules.linear_scaling(lr, args.batch_size or X_tr.shape[0])
    opt_kwargs: dict[str, Any] = {"lr": lr}
    if str(args.optimizer).lower() == "sgd":
        opt_kwargs["momentum"] = args.momentum
    optimizer = ma.optim.get_optimizer(args.optimizer, **opt_kwargs)

    validation_data = None
    callbacks = []
    if args.early_stopping is not None:
        if lazy:
            raise ValueError("--early-stopping is not available for memory-mapped --data")
        X_tr, X_val, y_tr_fit, y_val = train_test_split(
            X_tr,
            y_tr_fit,
            test_size=args.validation_fraction,
            seed=args.seed,
            stratify=task != "regression",
        )
        y_tr = y_tr_fit if task != "regression" else y_tr
        validation_data = (X_val, y_val)
        callbacks.append(ma.callbacks.EarlyStopping(patience=args.early_stopping))

    client, cluster = _dask_client(args)
    if client is not None and lazy:
        X_tr, y_tr_fit = np.asarray(X_tr), np.asarray(y_tr_fit)
    t0 = time.perf_counter()
    try:
        history = ma.fit(
            model,
            X_tr,
            y_tr_fit,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            progress=not args.no_progress,
            validation_data=validation_data,
            callbacks=callbacks,
            accumulate=args.accumulate,
            alpha=args.alpha,
            clip_norm=args.clip_norm,
            schedule=ma.schedules.get_schedule(args.schedule, args.epochs, args.warmup),
            checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume_from=args.resume,
            client=client,
            local_steps=args.local_steps,
        )
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    wall = time.perf_counter() - t0
    samples_per_sec = float(
        np.mean(history["samples_per_sec"][-max(1, len(history["time"]) // 2) :])
    )

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
    if lazy:
        # Score on at most 100,000 training rows: the rest stays on disk.
        n_score = min(X_tr.shape[0], 100_000)
        train_score = score(X_tr[:n_score], np.asarray(y_tr[:n_score]))
    else:
        train_score = score(X_tr, y_tr)
    test_score = score(X_te, y_te)
    if args.save:
        ma.io.save(model, args.save, extras=extras)
    if args.plot:
        from .plotting import plot_training

        plot_training(args.plot, history, model, X_te, y_te if task != "regression" else None)
    print(
        f"train {metric} {train_score:.4f}  test {metric} {test_score:.4f}  "
        f"loss {history['loss'][-1]:.4f}  epochs {history.n_epochs}  wall {wall:.2f} s  "
        f"{samples_per_sec:,.0f} samples/s  [{model.backend.name}, {model.dtype}, "
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
    return 0


def _dask_client(args: argparse.Namespace) -> tuple[Any, Any]:
    """A Dask client for --dask-workers (a local cluster) or --scheduler, else (None, None)."""
    if not args.dask_workers and not args.scheduler:
        if args.local_steps != 1:
            raise ValueError("--local-steps needs --dask-workers or --scheduler")
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(
            "--dask-workers/--scheduler need Dask: pip install 'mlp-accel[dask]'"
        ) from None
    if args.scheduler:
        return Client(args.scheduler), None
    if args.dask_workers < 1:
        raise ValueError(f"--dask-workers must be positive, got {args.dask_workers}")
    cluster = LocalCluster(
        n_workers=args.dask_workers, threads_per_worker=1, dashboard_address=":0"
    )
    return Client(cluster), cluster


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


# -- bench -------------------------------------------------------------------------------------
def _add_bench_parser(sub: Any) -> None:
    from .bench.cases import QUICK_SHAPES, SHAPES

    bench = sub.add_parser(
        "bench",
        help="measure training and inference throughput per backend, beside peers",
        description=(
            "Time a training step (forward + backward + Adam) and inference of the one model "
            "on every backend that works here, beside a lean NumPy reference and, where "
            "installed, scikit-learn and PyTorch (peers); print one table."
        ),
    )
    bench.add_argument(
        "--backends",
        type=_name_list,
        help="comma-separated backend names (default: every registered backend)",
    )
    bench.add_argument(
        "--shapes",
        type=_name_list,
        help=f"comma-separated cases: {', '.join(SHAPES)} (default: all; "
        f"with --quick: {', '.join(QUICK_SHAPES)})",
    )
    bench.add_argument(
        "--dtype",
        default="both",
        choices=("float32", "float64", "both"),
        help="dtype to measure (default both)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="fewer rounds, shorter sweep, no mnist-4096"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    bench.add_argument(
        "--plot", metavar="FILE.png", help="bar chart of samples/s and the sweep curves"
    )
    bench.add_argument(
        "--markdown", action="store_true", help="print the table as markdown (for the README)"
    )
    bench.add_argument(
        "--threads",
        type=int,
        help="limit BLAS, Numba and PyTorch threads (default: each library's own setting)",
    )
    bench.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the lean reference and the peers (scikit-learn, PyTorch)",
    )
    bench.add_argument("--no-sweep", action="store_true", help="skip the batch-size sweep")
    bench.add_argument(
        "--sweep-batches",
        type=_int_list,
        metavar="N,N,...",
        help="batch sizes of the sweep (default 2^6..2^17; 2^6..2^15 with --quick)",
    )
    bench.add_argument("--seed", type=int, default=0, help="seeds data and weights (default 0)")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _check_output_path(path: str | None, what: str) -> None:
    """Fail before measuring, not after minutes of it, when an output cannot be written."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: directory {directory} does not exist")


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    _check_output_path(args.json, "--json")
    _check_output_path(args.plot, "--plot")
    if args.plot:
        bench.report._pyplot()  # a missing matplotlib is reported before the run, not after
    dtypes = bench.DTYPES if args.dtype == "both" else (args.dtype,)

    def log(line: str) -> None:
        sys.stderr.write(f"[bench] {line}\n")
        sys.stderr.flush()

    config = bench.BenchConfig(
        backends=args.backends or None,
        shapes=args.shapes or None,
        dtypes=dtypes,
        quick=args.quick,
        peers=not args.no_peers,
        sweep=not args.no_sweep,
        sweep_batch_sizes=args.sweep_batches or None,
        threads=args.threads,
        seed=args.seed,
        log=None if args.quiet else log,
    )
    report = bench.run_bench(config)
    print(bench.format_markdown(report) if args.markdown else bench.format_table(report))
    if args.json:
        bench.write_json(report, args.json)
    if args.plot:
        bench.plot_report(report, args.plot)
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "predict": _cmd_predict,
    "backends": _cmd_backends,
    "bench": _cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlp-accel``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_gpu_options(args)
        # Overflow in a diverging run is reported once, by fit's divergence check, not as a
        # stream of NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
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
