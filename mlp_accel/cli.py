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
    """argparse whose usage errors are the (one-line) usage and one error line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(self.format_usage())
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _float_in(low: float, high: float, low_open: bool, high_open: bool, what: str) -> Any:
    """An argparse type: a finite float in the interval, refusing NaN and inf by name."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        # NaN fails every comparison, so it must be refused explicitly, not by the bounds.
        ok = (
            np.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_float = _float_in(0.0, np.inf, True, True, "a positive finite number")
_non_negative_float = _float_in(0.0, np.inf, False, True, "a non-negative finite number")
_open_fraction = _float_in(0.0, 1.0, True, True, "a fraction strictly between 0 and 1")
_momentum = _float_in(0.0, 1.0, False, True, "in [0, 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlp-accel``."""
    from . import __version__
    from .backends import BACKENDS
    from .data import DATASETS
    from .initializers import INITIALIZERS
    from .optim import OPTIMIZERS

    parser = _Parser(prog=PROG, description="Train multilayer perceptrons on NumPy, Numba or CuPy.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    backends = ("auto", *BACKENDS)
    backend_help = "backend (default: $MLP_ACCEL_BACKEND or auto)"
    default_backend = os.environ.get("MLP_ACCEL_BACKEND", "auto")

    t = sub.add_parser(
        "train",
        usage="%(prog)s [options]",
        help="train a model (default: the tutorial's circles problem)",
        description="Train a model, print its train and test scores, optionally save it.",
    )
    data = t.add_argument_group("data")
    src = data.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset", default="circles", choices=DATASETS, help="built-in dataset (default circles)"
    )
    src.add_argument(
        "--data",
        metavar="FILE",
        help="CSV (header row optional; last column the target, numbers or class names), "
        ".npy (target last; memory-mapped) or .npz (X, y)",
    )
    data.add_argument(
        "--task",
        choices=("binary", "multiclass", "regression"),
        help="task (default: the built-in dataset's, or guessed from the target of --data)",
    )
    data.add_argument(
        "--test-size",
        type=_open_fraction,
        default=0.25,
        metavar="FRACTION",
        help="held-out fraction (default 0.25)",
    )
    data.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="seeds data, split, initial weights and shuffles (default 0)",
    )

    model = t.add_argument_group("model")
    model.add_argument(
        "--layers",
        type=_int_list,
        metavar="N,N,...",
        help="widths, e.g. 2,4,3,1 (default: 2,4,3,1 for 2-D data, else n_in,64,n_out)",
    )
    model.add_argument(
        "--activations",
        type=_name_list,
        metavar="NAME,...",
        help="per weight layer, e.g. relu,relu,sigmoid",
    )
    model.add_argument(
        "--loss",
        metavar="NAME",
        help="binary_cross_entropy, cross_entropy or squared_error (default: from the task)",
    )
    model.add_argument(
        "--init", default="glorot", choices=INITIALIZERS, help="initialization (default glorot)"
    )
    model.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"), help="(default float32)"
    )
    model.add_argument("--backend", default=default_backend, choices=backends, help=backend_help)
    _add_gpu_options(model)

    opt = t.add_argument_group("optimization")
    opt.add_argument(
        "--epochs",
        type=_positive_int,
        default=300,
        metavar="N",
        help="passes over the data (default 300)",
    )
    opt.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="rows per step (default: all)",
    )
    opt.add_argument(
        "--optimizer", default="adam", choices=tuple(OPTIMIZERS), help="(default adam)"
    )
    opt.add_argument(
        "--lr", type=_positive_float, default=0.03, help="learning rate (default 0.03)"
    )
    opt.add_argument("--momentum", type=_momentum, default=0.9, help="for sgd (default 0.9)")
    opt.add_argument(
        "--alpha", type=_non_negative_float, default=0.0, help="L2 penalty (default 0)"
    )
    opt.add_argument(
        "--early-stopping",
        type=_positive_int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs",
    )
    opt.add_argument(
        "--validation-fraction",
        type=_open_fraction,
        metavar="FRACTION",
        default=0.1,
        help="share of the training split held out for --early-stopping (default 0.1)",
    )

    large = t.add_argument_group("large runs")
    large.add_argument(
        "--schedule",
        default="constant",
        choices=("constant", "step", "cosine"),
        help="learning-rate schedule (default constant)",
    )
    large.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=0.0,
        metavar="EPOCHS",
        help="epochs of linear learning-rate warmup (default 0)",
    )
    large.add_argument(
        "--scale-lr", action="store_true", help="linear scaling rule: lr * batch / 256"
    )
    large.add_argument(
        "--clip-norm",
        type=_positive_float,
        default=None,
        metavar="NORM",
        help="clip the global gradient norm",
    )
    large.add_argument(
        "--accumulate",
        type=_positive_int,
        default=1,
        metavar="K",
        help="micro-batches per step (gradient accumulation; default 1)",
    )

    large.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="BLAS and Numba threads, fixed (default: the usable CPUs, serial or parallel "
        "measured per shape)",
    )

    ckpt = t.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint", metavar="FILE", help="write a training checkpoint here")
    ckpt.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=1,
        metavar="N",
        help="epochs between checkpoints (default 1)",
    )
    ckpt.add_argument("--resume", metavar="FILE", help="resume training from a checkpoint")

    output = t.add_argument_group("output")
    output.add_argument("--save", metavar="FILE", help="save the trained model (.npz)")
    output.add_argument(
        "--plot",
        metavar="FILE.png",
        help="loss curve (and the decision boundary on the test split for 2-D data)",
    )
    output.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    dist = t.add_argument_group("distributed (Dask)")
    dask_opts = dist.add_mutually_exclusive_group()
    dask_opts.add_argument(
        "--dask-workers",
        type=_positive_int,
        metavar="N",
        help="train data-parallel on a local Dask cluster of N worker processes",
    )
    dask_opts.add_argument(
        "--scheduler", metavar="ADDRESS", help="train data-parallel on this Dask scheduler"
    )
    dist.add_argument(
        "--local-steps",
        type=_positive_int,
        metavar="N",
        default=1,
        help="local SGD steps between weight averages (not exact; default 1)",
    )

    p = sub.add_parser(
        "predict",
        usage="%(prog)s --model FILE --data FILE [options]",
        help="predict with a saved model",
        description="Print (or write) a saved model's predictions for the rows of a file.",
    )
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
    p.add_argument("--backend", default=default_backend, choices=backends, help=backend_help)
    _add_gpu_options(p)

    b = sub.add_parser(
        "backends",
        usage="%(prog)s [--device N] [--tf32]",
        help="list the backends, whether they work here, and why not",
    )
    b.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    _add_gpu_options(b)
    _add_bench_parser(sub)
    return parser


def _add_gpu_options(parser: Any) -> None:
    parser.add_argument(
        "--device",
        type=int,  # a negative index is refused, with the option named, when it is applied
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
    """Hand --device and --tf32 to the backend request: ``args.backend`` becomes ``(name,
    options)``, which ``MLP``, ``load`` and ``get_backend`` take (no environment is written)."""
    options: dict[str, Any] = {}
    device = getattr(args, "device", None)
    if device is not None:
        if device < 0:
            raise ValueError(f"--device must be a GPU index (0, 1, ...), got {device}")
        options["device"] = device
    if getattr(args, "tf32", False):
        options["tf32"] = True
    if options:
        name = getattr(args, "backend", None) or "auto"
        if str(name).strip().lower() not in ("auto", "cupy"):
            raise ValueError(f"--device and --tf32 apply to the cupy backend, not to {name!r}")
        args.backend = (name, options)


# -- train -------------------------------------------------------------------------------------
def _guess_task(y: np.ndarray) -> str:
    values = np.unique(y)
    if values.dtype.kind in "USO":
        return "binary" if len(values) == 2 else "multiclass"
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


def _load_training_data(args: argparse.Namespace) -> tuple[Any, Any, str, bool, str]:
    """``(X, y, task, lazy, source)`` of --data or --dataset, checked before any split."""
    from .data import load_dataset, load_file

    if not args.data:
        X, y, task = load_dataset(args.dataset, seed=args.seed)
        return X, y, args.task or task, False, f"--dataset {args.dataset}"
    from sklearn.utils import check_X_y

    source = args.data
    X, y = load_file(args.data, mmap=True)
    lazy = isinstance(X, np.memmap)
    text_labels = y.dtype.kind in "US"
    if text_labels and args.task == "regression":
        raise ValueError(
            f"--task regression needs numbers in the target column, but {source} holds text "
            f"labels such as {str(y[0])!r}"
        )
    if lazy:
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{source} holds {X.dtype} values; features must be real numbers")
    else:
        # Validate before splitting, so bad data is named as such, not as a split failure.
        X, y = check_X_y(X, y, dtype=np.float64, ensure_all_finite=True, y_numeric=not text_labels)
    task = args.task or _guess_task(y)
    return X, y, task, lazy, source


def _label(value: Any) -> str:
    """A class label as the user wrote it: ``0``, not ``0.0``, for numbers read as floats."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _output_units(args: argparse.Namespace, task: str, classes: np.ndarray, source: str) -> int:
    """Output width for the task, refusing a loss that does not fit the data with the reason."""
    if task == "regression":
        if args.loss in ("binary_cross_entropy", "cross_entropy"):
            raise ValueError(
                f"--loss {args.loss} is a classification loss, but the target of {source} is "
                "continuous (regression): use --loss squared_error, or --task binary/multiclass"
            )
        return 1
    if len(classes) < 2:
        raise ValueError(
            f"the target of {source} has a single class ({_label(classes[0])}); classification "
            "needs "
            "at least 2 classes" + ("" if classes.dtype.kind in "US" else " (or --task regression)")
        )
    if task == "binary" and len(classes) != 2:
        raise ValueError(f"--task binary needs 2 classes, found {len(classes)} in {source}")
    if task == "binary" and args.loss == "cross_entropy":
        if args.layers and args.layers[-1] == 2:
            return 2  # a 2-unit softmax is a valid, if unusual, binary classifier
        raise ValueError(
            f"--loss cross_entropy needs one softmax unit per class, but the target of {source} "
            "is binary, which gets 1 sigmoid output unit: use --loss binary_cross_entropy (the "
            "default for 2 classes) or --task multiclass"
        )
    if task == "multiclass" and args.loss == "binary_cross_entropy":
        raise ValueError(
            f"--loss binary_cross_entropy is for 2 classes, but the target of {source} has "
            f"{len(classes)}: use --loss cross_entropy (the default for several classes)"
        )
    return 1 if task == "binary" else len(classes)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return ""  # unreachable


def _check_model_size(layers: Sequence[int], dtype: str, batch_rows: int) -> None:
    """Refuse, before allocating, a network that cannot fit in this machine's memory.

    The estimate is a lower bound: weights, gradients, two optimizer buffers and a snapshot
    (five copies of the parameters), plus a batch's activations and deltas.
    """
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return  # no way to ask (Windows): the allocation itself will tell
    widths = [int(w) for w in layers]
    if len(widths) < 2 or min(widths) < 1:
        return  # the model reports malformed widths itself
    itemsize = np.dtype(dtype).itemsize
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    need = itemsize * (5 * n_params + 2 * batch_rows * sum(widths[1:]))
    if need > memory:
        raise ValueError(
            f"--layers {','.join(map(str, widths))} ({n_params:,} parameters) needs at least "
            f"{_bytes(need)} of memory to train, more than this machine's {_bytes(memory)}"
        )


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


def _cmd_train(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from .data import Standardizer, train_test_split

    if args.threads is not None:
        ma.set_threads(args.threads)
    if args.plot:
        from .plotting import require_matplotlib

        require_matplotlib()  # before training, not after it, so no result is lost
        _check_output_path(args.plot, "--plot")
    _check_output_path(args.save, "--save")
    X, y, task, lazy, source = _load_training_data(args)
    extras: dict[str, Any] = {}
    if task != "regression":
        classes = np.unique(y)
        if lazy:
            if not np.array_equal(classes, np.arange(len(classes))):
                raise ValueError("a memory-mapped --data file needs class labels 0..k-1")
        else:
            classes, y = np.unique(y, return_inverse=True)
        extras["classes"] = classes
    else:
        classes = np.empty(0)
    n_out = _output_units(args, task, classes, source)
    if lazy:
        X_tr, X_te, y_tr, y_te, scaler = _split_lazy(X, y, args.test_size, args.seed)
    else:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=args.test_size, seed=args.seed, stratify=task != "regression"
        )
        scaler = Standardizer().fit(np.asarray(X_tr, dtype=np.float64))
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    extras.update(x_mean=scaler.mean, x_scale=scaler.scale)

    validation_data = None
    callbacks = []
    if args.early_stopping is not None:
        if lazy:
            raise ValueError("--early-stopping is not available for memory-mapped --data")
        # Split row indices, so features, raw targets and fitted targets stay aligned.
        fit_rows, val_rows, _, _ = train_test_split(
            np.arange(len(y_tr)),
            y_tr,
            test_size=args.validation_fraction,
            seed=args.seed,
            stratify=task != "regression",
        )
        X_val, y_val_raw = X_tr[val_rows], y_tr[val_rows]
        X_tr, y_tr = X_tr[fit_rows], y_tr[fit_rows]
        callbacks.append(ma.callbacks.EarlyStopping(patience=args.early_stopping))
    if task == "regression":
        y_sample = np.asarray(y_tr[:100_000] if lazy else y_tr, dtype=np.float64).reshape(-1, 1)
        y_scaler = Standardizer().fit(y_sample)
        extras.update(y_mean=y_scaler.mean, y_scale=y_scaler.scale)
        if lazy:
            from .batches import ScaledRows

            y_tr_fit = ScaledRows(y_tr.reshape(-1, 1), y_scaler.mean, y_scaler.scale)
        else:
            y_tr_fit = y_scaler.transform(np.asarray(y_tr, dtype=np.float64).reshape(-1, 1))
    else:
        y_tr_fit = y_tr
    if args.early_stopping is not None:
        y_val = y_val_raw
        if task == "regression":
            y_val = y_scaler.transform(np.asarray(y_val_raw, dtype=np.float64).reshape(-1, 1))
        validation_data = (X_val, y_val)

    layers = args.layers or _default_layers(X.shape[1], n_out)
    _check_model_size(layers, args.dtype, args.batch_size or X_tr.shape[0])
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
    if args.optimizer == "sgd":
        opt_kwargs["momentum"] = args.momentum
    optimizer = ma.optim.get_optimizer(args.optimizer, **opt_kwargs)
    first_epoch = 0
    if args.resume:
        first_epoch = int(ma.io.load_metadata(args.resume).get("checkpoint", {}).get("epoch", 0))

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
    wall = time.perf_counter() - t0
    rows, seconds = _throughput(history, first_epoch)

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
    # The result line comes first, so that a failing save or plot cannot lose it.
    print(
        f"train {metric} {train_score:.4f}  test {metric} {test_score:.4f}  "
        f"loss {history['loss'][-1]:.4f}  epochs {history.n_epochs}  "
        f"trained {rows:,} samples in {seconds:.2f} s = {rows / max(seconds, 1e-12):,.0f} "
        f"samples/s  "
        f"(fit wall {wall:.2f} s incl. setup)  [{model.backend.name}, {model.dtype}, "
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
    if args.save:
        ma.io.save(model, args.save, extras=extras)
    if args.plot:
        from .plotting import plot_training

        plot_training(args.plot, history, model, X_te, y_te if task != "regression" else None)
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
        try:
            return Client(args.scheduler), None
        except Exception as exc:
            raise RuntimeError(
                f"cannot connect to the Dask scheduler at {args.scheduler} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    cluster = LocalCluster(
        n_workers=args.dask_workers, threads_per_worker=1, dashboard_address=":0"
    )
    return Client(cluster), cluster


def _close_dask(client: Any, cluster: Any) -> None:
    """Close a client and cluster; a cluster that already died must not mask the real error."""
    for thing in (client, cluster):
        if thing is not None:
            try:
                thing.close()
            except Exception:  # closing a dead cluster can raise anything
                pass


# -- predict -----------------------------------------------------------------------------------
def _cmd_predict(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from .data import load_file
    from .io import atomic_write, load_extras

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
    if args.out:
        atomic_write(
            args.out,
            lambda f: np.savetxt(f, out2, fmt=fmt, delimiter=",", encoding="utf-8"),
        )
    else:
        np.savetxt(sys.stdout, out2, fmt=fmt, delimiter=",")
    return 0


# -- backends ----------------------------------------------------------------------------------
def _cmd_backends(args: argparse.Namespace) -> int:
    from .backends import AUTO_ORDER, backend_status, get_backend

    options = args.backend[1] if isinstance(args.backend, tuple) else {}
    status = backend_status(**options)
    for name, (works, info) in status.items():
        if works:
            details = ", ".join(f"{k} {v}" for k, v in info.items())
            print(f"{name:6s}  yes  {details}")
        else:
            print(f"{name:6s}  no   {info}")
    try:
        chosen = get_backend("auto", **options).name
    except RuntimeError as exc:
        chosen = f"none ({exc})"
    print(
        f"auto -> {chosen} for get_backend('auto')  (order: {', '.join(AUTO_ORDER)}; "
        "override with MLP_ACCEL_BACKEND)"
    )
    from .backends._auto import RULE
    from .backends._threads import usable_cpus

    print("models on auto: " + "\n  ".join(RULE))
    print(f"threads: {usable_cpus()} usable CPUs (affinity and cgroup quota); --threads N fixes")
    return 0


# -- bench -------------------------------------------------------------------------------------
def _add_bench_parser(sub: Any) -> None:
    from .bench.cases import QUICK_SHAPES, SHAPES

    bench = sub.add_parser(
        "bench",
        usage="%(prog)s [options]",
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
        "--contended",
        action="store_true",
        help="keep one core busy with another process during the whole run (started and "
        "stopped by the bench), as on a shared machine",
    )
    bench.add_argument(
        "--first-run",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the first-run column: a fresh process on empty caches to its first "
        "epoch, per backend and peer (default: on; off with --quick, it costs seconds of "
        "compilation per numba row)",
    )
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
        contended=args.contended,
        first_run=args.first_run,
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
    """Run ``mlp-accel``; returns the exit status.

    Every failure is one line on stderr: usage errors exit 2 (after the usage line), other
    errors 1, an interrupt 130. No exception escapes as a traceback.
    """
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
    except BrokenPipeError:
        # The reader went away (``| head``): not an error to report. Point stdout at devnull
        # so the interpreter's final flush does not fail again (Python's documented recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        sys.stderr.write(f"{PROG}: error: out of memory{detail}\n")
        return EXIT_ERROR
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        _write_error(str(exc) or type(exc).__name__)
        return EXIT_ERROR
    except Exception as exc:  # the CLI promises no tracebacks
        # An unexpected class (KeyError from a malformed file, ...): name it, as a bug report
        # would need.
        _write_error(f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _write_error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")


if __name__ == "__main__":
    raise SystemExit(main())
