"""Datasets: the tutorial's circles, moons, scikit-learn's bundled sets, and user files.

Every loader returns ``(X, y, task)`` with ``task`` either ``"binary"``, ``"multiclass"`` or
``"regression"``; class labels are integers ``0..k-1``. scikit-learn is imported on use.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "load_dataset",
    "load_file",
    "check_features",
    "train_test_split",
    "Standardizer",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("circles", "moons", "digits", "iris", "wine", "breast_cancer", "diabetes")


def load_dataset(
    name: str, seed: int | None = 0, n_samples: int = 1000
) -> tuple[np.ndarray, np.ndarray, str]:
    """Load a named dataset.

    ``circles`` is the tutorial's problem: ``make_circles(n_samples, noise=0.1, factor=0.5)``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    """
    import sklearn.datasets as skd

    if name == "circles":
        X, y = skd.make_circles(n_samples=n_samples, noise=0.1, factor=0.5, random_state=seed)
        return X, y, "binary"
    if name == "moons":
        X, y = skd.make_moons(n_samples=n_samples, noise=0.1, random_state=seed)
        return X, y, "binary"
    loaders = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "diabetes": skd.load_diabetes,
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    X, y = loaders[name](return_X_y=True)
    if name == "diabetes":
        return X, y.astype(np.float64), "regression"
    return X, y, "binary" if len(np.unique(y)) == 2 else "multiclass"


def load_file(
    path: str | os.PathLike,
    has_target: bool = True,
    mmap: bool = False,
    n_features: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features (and targets) from a file.

    - ``.csv``: comma-separated numbers, the last column the target. A first row that does
      not parse as numbers is a header and is skipped; otherwise it is data. The target
      column may hold text class labels (``yes``/``no``, ``setosa``, ...).
    - ``.npy``: a 2-D array; the last column is the target.
    - ``.npz``: arrays ``X`` and (optionally) ``y``.

    Parameters
    ----------
    path : path-like
    has_target : bool
        With ``False`` every column of a CSV or ``.npy`` file is a feature.
    mmap : bool
        Memory-map a ``.npy`` file instead of reading it: ``X`` and ``y`` are views of it.
    n_features : int, optional
        With ``has_target=False``: the number of feature columns expected. A CSV or ``.npy``
        file with one column more (a training file, target last) has that column dropped, and
        any other width is refused; see :func:`check_features`.

    Returns
    -------
    X : ndarray
        2-D features; ``float64`` for CSV files, the stored dtype otherwise.
    y : ndarray or None
        The targets: numbers (``float64`` for CSV), or strings for text labels in a CSV.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Empty, unreadable or non-numeric content, or an unsupported suffix.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".csv":
            return _load_csv(path, has_target, n_features)
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "X" not in npz.files:
                    raise ValueError(
                        f"{path} has no array named 'X' (found {', '.join(npz.files)})"
                    )
                X = npz["X"]
                y = npz["y"] if "y" in npz.files else None
            if has_target and y is None:
                raise ValueError(f"{path} has no array named 'y'")
            if not has_target:
                return check_features(X, n_features, path), None
            return X, y
        else:
            raise ValueError(f"unsupported data file {path!r}: use .csv, .npy or .npz")
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if path in message else f"cannot read {path}: {message}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {path}: {exc}") from None
    if data.ndim != 2:
        raise ValueError(f"{path} must hold a 2-D table, got shape {data.shape}")
    if not has_target:
        return check_features(data, n_features, path), None
    if data.shape[1] < 2:
        raise ValueError(f"{path} needs at least one feature column and a target column")
    return data[:, :-1], data[:, -1]


def _parses_as_numbers(fields: list[str]) -> bool:
    try:
        for field in fields:
            float(field)
    except ValueError:
        return False
    return True


def _load_csv(
    path: str, has_target: bool, n_features: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A CSV file as ``(X, y)``: header detected, text labels allowed in the target column."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        # The first non-blank row decides: numbers are data, anything else is a header.
        first: list[str] | None = None
        n_before = 0
        for row in csv.reader(f):
            n_before += 1
            if any(field.strip() for field in row):
                first = [field.strip() for field in row]
                break
    if first is None:
        raise ValueError(f"{path} is empty: no header and no data rows")
    header = not _parses_as_numbers(first)
    skip = n_before if header else n_before - 1
    n_columns = len(first)
    if has_target and n_columns < 2:
        raise ValueError(f"{path} needs at least one feature column and a target column")
    if not has_target and n_features is not None and n_columns == n_features + 1:
        n_columns = n_features  # a training file: its last column is the target, ignored
    elif not has_target:
        check_features(np.empty((0, n_columns)), n_features, path)
    n_x = n_columns - 1 if has_target else n_columns

    def read(columns: Any, dtype: Any) -> np.ndarray:
        # An empty body is reported here, not as numpy's "input contained no data" warning.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            try:
                return np.loadtxt(
                    path,
                    delimiter=",",
                    skiprows=skip,
                    usecols=columns,
                    ndmin=2 if dtype is np.float64 else 1,
                    dtype=dtype,
                    encoding="utf-8-sig",
                )
            except UserWarning:
                raise ValueError(f"{path} has a header but no data rows") from None

    try:
        X = read(range(n_x), np.float64)
    except ValueError as exc:
        message = str(exc)
        if "no data rows" in message:
            raise
        raise ValueError(f"{path}: a feature value is not a number ({message})") from None
    if not has_target:
        return X, None
    y_text = np.char.strip(read(n_columns - 1, str))
    try:
        y = y_text.astype(np.float64)
    except ValueError:
        # Text labels are class names; they are only valid for classification, which the
        # caller decides and checks.
        y = y_text
    return X, y


def check_features(
    X: Any, n_features: int | None = None, source: str | os.PathLike = "X"
) -> np.ndarray:
    """Check prediction inputs against a model before anything computes with them.

    Parameters
    ----------
    X : array-like
        2-D features of real numbers (bool, integer or float; complex is refused).
    n_features : int, optional
        The model's input width. A table with exactly one column more (a training file, its
        target last) has that column dropped.
    source : str or path-like
        Names the data in messages.

    Returns
    -------
    ndarray
        ``X``, possibly without its last column. Memory maps stay memory maps.

    Raises
    ------
    ValueError
        Not 2-D, not real numbers, NaN or infinite values (checked unless memory-mapped), or a
        column count other than ``n_features`` (or one more); the message names the expected
        and the actual column count.
    """
    source = os.fspath(source)
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    if X.dtype.kind not in "biuf":
        what = "complex numbers" if X.dtype.kind == "c" else f"dtype {X.dtype}"
        raise ValueError(f"{source} holds {what}; features must be real numbers")
    if X.ndim != 2:
        raise ValueError(f"{source} must hold a 2-D table of features, got shape {X.shape}")
    if n_features is not None:
        if X.shape[1] == n_features + 1:
            X = X[:, :n_features]
        elif X.shape[1] != n_features:
            raise ValueError(
                f"{source} has {X.shape[1]} feature column{'s' * (X.shape[1] != 1)}; the model "
                f"expects {n_features} (or {n_features + 1} with the target last)"
            )
    if not isinstance(X, np.memmap) and not np.isfinite(X).all():
        raise ValueError(f"{source} contains NaN or infinite feature values")
    return X


def train_test_split(
    X: np.ndarray,
    y: np.ndarray,
    test_size: float = 0.25,
    seed: int | None = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``train_test_split``, stratified for classification targets."""
    from sklearn.model_selection import train_test_split as split

    return split(X, y, test_size=test_size, random_state=seed, stratify=y if stratify else None)


class Standardizer:
    """Per-feature standardization fitted on training data (zero mean, unit variance)."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        self.mean = mean
        self.scale = scale

    def fit(self, X: np.ndarray) -> Standardizer:
        """Learn the column means and standard deviations of ``X`` (1 for constant columns)."""
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` centred and scaled by the fitted statistics."""
        return (X - self.mean) / self.scale
