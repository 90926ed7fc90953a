"""Data preparation for ``mlp-accel train``: load, label, split, and the preprocessing.

The splits stay raw (the user's features and labels or targets). The standardization
statistics of the training split, the class labels, the target scaling of a regression and a
CSV header's column names make a :class:`~mlp_accel.preprocessing.Preprocessing` that the
trained model carries from the start: ``fit`` applies it to every batch, and every file the run
writes (``--save`` and ``--checkpoint``) keeps it, so that a loaded model, ``predict`` and a
resumed run all take raw rows.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.table import CLASSIFICATION_LOSSES

# Memory-mapped files are never read whole: the test split, the standardization sample and the
# scored training rows are capped at this many rows.
_LAZY_ROWS = 100_000


@dataclass
class TrainingData:
    """The raw splits of one training run and the model's preprocessing (``extras``).

    Features are as read (a memory map stays one), targets are the user's labels or values.
    """

    task: str
    lazy: bool
    n_features: int
    n_out: int
    X_train: Any
    y_train: Any
    X_test: np.ndarray
    y_test: np.ndarray
    validation_data: tuple[Any, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> Any:
        """What raw rows and labels go through to reach the network: the model carries it."""
        from ..preprocessing import Preprocessing

        return Preprocessing(**self.extras)


def prepare_training_data(args: argparse.Namespace) -> TrainingData:
    """Load --data or --dataset, check it against the options, split and standardize it."""
    from ..data import Standardizer, train_test_split

    X, y, task, lazy, source, names = _load_training_data(args)
    extras: dict[str, Any] = {}
    if names is not None:
        extras.update(feature_names=names[:-1], target_name=names[-1])
    if task != "regression":
        classes = np.unique(y)
        if lazy:
            if not np.array_equal(classes, np.arange(len(classes))):
                raise ValueError("a memory-mapped --data file needs class labels 0..k-1")
        else:
            # Split on indices, so that the split does not depend on how labels are spelled.
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
        if task != "regression":
            y_tr, y_te = classes[y_tr], classes[y_te]
    extras.update(x_mean=scaler.mean, x_scale=scaler.scale)
    data = TrainingData(
        task=task,
        lazy=lazy,
        n_features=X.shape[1],
        n_out=n_out,
        X_train=X_tr,
        y_train=y_tr,
        X_test=X_te,
        y_test=y_te,
        extras=extras,
    )
    _hold_out_validation(args, data)
    if task == "regression":
        _target_scaling(data, counts=args.loss == "poisson")
    return data


def _hold_out_validation(args: argparse.Namespace, data: TrainingData) -> None:
    """Split the validation rows for --early-stopping, and for --save-best and
    --reduce-lr-on-plateau watching a val_* --monitor, off the training split."""
    from ..data import train_test_split

    watching = [
        option
        for option, value in (
            ("--save-best", args.save_best),
            ("--reduce-lr-on-plateau", args.reduce_lr_on_plateau),
        )
        if value is not None
    ]
    if args.early_stopping is None and not (watching and args.monitor.startswith("val_")):
        return
    if data.lazy:
        if args.early_stopping is not None:
            raise ValueError("--early-stopping is not available for memory-mapped --data")
        raise ValueError(
            f"{' and '.join(watching)} with --monitor {args.monitor} need validation rows, which "
            "memory-mapped --data does not hold out: use --monitor loss"
        )
    # Split row indices, so features and targets stay aligned.
    fit_rows, val_rows, _, _ = train_test_split(
        np.arange(len(data.y_train)),
        data.y_train,
        test_size=args.validation_fraction,
        seed=args.seed,
        stratify=data.task != "regression",
    )
    X_val, y_val = data.X_train[val_rows], data.y_train[val_rows]
    data.X_train, data.y_train = data.X_train[fit_rows], data.y_train[fit_rows]
    data.validation_data = (X_val, y_val)


def _target_scaling(data: TrainingData, counts: bool = False) -> None:
    """The regression target scaling of the preprocessing: the network fits standardized
    targets, and the model's ``predict`` returns them in the target's units."""
    from ..data import Standardizer

    y_tr = data.y_train
    y_sample = np.asarray(y_tr[:_LAZY_ROWS] if data.lazy else y_tr, dtype=np.float64)
    # Poisson targets are counts for an exp output: kept as they are, not standardized.
    if counts:
        y_scaler = Standardizer(np.zeros(1), np.ones(1))
    else:
        y_scaler = Standardizer().fit(y_sample.reshape(-1, 1))
    data.extras.update(y_mean=y_scaler.mean, y_scale=y_scaler.scale)


def _guess_task(y: np.ndarray) -> str:
    values = np.unique(y)
    if values.dtype.kind in "USO":
        return "binary" if len(values) == 2 else "multiclass"
    if np.all(np.mod(values, 1) == 0) and len(values) <= max(2, min(50, len(y) // 5)):
        return "binary" if len(values) == 2 else "multiclass"
    return "regression"


def _split_lazy(X: Any, y: Any, test_size: float, seed: int) -> tuple[Any, ...]:
    """Train/test split of a memory map without reading it: the last rows are the test set
    (at most 100,000), and the standardization comes from a random sample of training rows."""
    from .._validation import nonfinite_kind
    from ..data import Standardizer

    n = X.shape[0]
    n_test = min(max(1, round(test_size * n)), _LAZY_ROWS)
    n_train = n - n_test
    rows = np.sort(
        np.random.default_rng(seed).choice(n_train, min(n_train, _LAZY_ROWS), replace=False)
    )
    sample = np.asarray(X[rows], dtype=np.float64)
    bad = nonfinite_kind(sample)
    if bad is not None:
        # Statistics over these rows would be NaN: name the data, not the statistics.
        raise ValueError(f"the rows read from the table contain {bad}")
    scaler = Standardizer().fit(sample)
    return (
        X[:n_train],
        np.asarray(X[n_train:]),
        y[:n_train],
        np.asarray(y[n_train:]),
        scaler,
    )


def _load_training_data(args: argparse.Namespace) -> tuple[Any, Any, str, bool, str, Any]:
    """``(X, y, task, lazy, source, header names)`` of --data or --dataset, checked before any
    split; the names are a CSV header's (``None`` without one)."""
    from ..data import load_dataset, load_file

    if not args.data:
        X, y, task = load_dataset(args.dataset, seed=args.seed)
        return X, y, args.task or task, False, f"--dataset {args.dataset}", None
    from sklearn.utils import check_X_y

    source = args.data
    X, y, names = load_file(args.data, mmap=True, header=args.header, return_names=True)
    repeated = sorted({n for n in names or () if names.count(n) > 1})
    if repeated:
        # Columns are matched to the model's by these names when it predicts.
        raise ValueError(f"{source}: the header names column(s) {repeated} more than once")
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
    return X, y, task, lazy, source, names


def _label(value: Any) -> str:
    """A class label as the user wrote it: ``0``, not ``0.0``, for numbers read as floats."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _output_units(args: argparse.Namespace, task: str, classes: np.ndarray, source: str) -> int:
    """Output width for the task, refusing a loss that does not fit the data with the reason."""
    if task == "regression":
        if args.loss in CLASSIFICATION_LOSSES:
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
