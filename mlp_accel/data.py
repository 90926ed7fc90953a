"""Datasets: the tutorial's circles, moons, scikit-learn's bundled sets, and user files.

Every loader returns ``(X, y, task)`` with ``task`` either ``"binary"``, ``"multiclass"`` or
``"regression"``; class labels are integers ``0..k-1``. scikit-learn is imported on use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
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
    *,
    header: bool | None = None,
    feature_names: Sequence[str] | None = None,
    target_name: str | None = None,
    return_names: bool = False,
) -> Any:
    """Read features (and targets) from a file.

    - ``.csv``: comma-separated numbers, the last column the target. The first row is a header
      when its feature columns are not numbers, data when they are; a row with both, or
      numbers over a text target in a column of numbers, is refused unless ``header`` says
      which. The target column may hold text class labels (``yes``/``no``, ``setosa``, ...).
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
    header : bool, optional
        Whether a CSV file's first row is a header; ``None`` (default): decided as above.
    feature_names, target_name : optional
        With ``has_target=False``: the model's feature names (and its training target's). A
        CSV header's columns are then taken by name, in this order, whatever the file's order
        (a target column named ``target_name`` is ignored); other names are refused. A file
        without a header is read by position.
    return_names : bool
        Return the CSV header's names as a third value (``None`` without a header).

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
        Empty, unreadable or non-numeric content, a first row that may or may not be a
        header, header names that do not match ``feature_names``, or an unsupported suffix.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    names = None
    try:
        if suffix == ".csv":
            X, y, names = _load_csv(
                path, has_target, n_features, header, feature_names, target_name
            )
        else:
            X, y = _load_array(path, suffix, has_target, mmap, n_features)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if path in message else f"cannot read {path}: {message}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {path}: {exc}") from None
    return (X, y, names) if return_names else (X, y)


def _load_array(
    path: str, suffix: str, has_target: bool, mmap: bool, n_features: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz.files:
                raise ValueError(f"{path} has no array named 'X' (found {', '.join(npz.files)})")
            X = npz["X"]
            y = npz["y"] if "y" in npz.files else None
        if has_target and y is None:
            raise ValueError(f"{path} has no array named 'y'")
        if not has_target:
            return check_features(X, n_features, path), None
        return X, y
    if suffix != ".npy":
        raise ValueError(f"unsupported data file {path!r}: use .csv, .npy or .npz")
    data = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    if data.ndim != 2:
        raise ValueError(f"{path} must hold a 2-D table, got shape {data.shape}")
    if not has_target:
        return check_features(data, n_features, path), None
    if data.shape[1] < 2:
        raise ValueError(f"{path} needs at least one feature column and a target column")
    return data[:, :-1], data[:, -1]


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _first_row(path: str) -> tuple[list[str], int]:
    """The first non-blank row's fields and the number of rows up to it."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        for n_rows, row in enumerate(csv.reader(f), 1):
            if any(field.strip() for field in row):
                return [field.strip() for field in row], n_rows
    raise ValueError(f"{path} is empty: no header and no data rows")


def _is_header(path: str, first: list[str], n_x: int) -> bool:
    """Tell whether the first row is a header, from its feature columns.

    All numbers: data; none: a header; a mix cannot be told and is refused, naming the way
    to say which.
    """
    numbers = [_is_number(field) for field in first[:n_x]]
    if all(numbers) or not any(numbers):
        return not any(numbers)
    raise ValueError(
        f"{path}: cannot tell whether the first row is a header: some of its feature columns "
        "are numbers, some are not; say which with --header or --no-header (header=True/False)"
    )


def match_columns(
    names: Sequence[str], features: Sequence[str], target_name: str | None, source: str
) -> list[int]:
    """Where each of the model's ``features`` is among a header's column ``names``.

    A permutation of the feature names, with the training target's column anywhere or not at
    all, is matched by name; anything else is refused, naming what is missing and unknown.
    """
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"{source}: the header names column(s) {repeated} more than once")
    missing = [n for n in features if n not in names]
    unknown = [n for n in names if n not in features and n != target_name]
    if missing or unknown:
        parts = [f"missing {', '.join(map(repr, missing))}"] if missing else []
        parts += [f"unknown {', '.join(map(repr, unknown))}"] if unknown else []
        raise ValueError(
            f"{source}: the header's columns do not match the model's features "
            f"({', '.join(features)}): {'; '.join(parts)}"
        )
    return [list(names).index(n) for n in features]


def _load_csv(
    path: str,
    has_target: bool,
    n_features: int | None,
    header: bool | None,
    feature_names: Sequence[str] | None,
    target_name: str | None,
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """A CSV file as ``(X, y, header names)``: text labels allowed in the target column."""
    first, n_before = _first_row(path)
    n_columns = len(first)
    if has_target and n_columns < 2:
        raise ValueError(f"{path} needs at least one feature column and a target column")
    n_x = n_columns - 1 if has_target else n_columns
    if not has_target and n_features is not None and n_columns == n_features + 1:
        n_x = n_features  # a training file: its last column is the target, ignored
    detected = header is None
    if detected:
        header = _is_header(path, first, n_x)
    skip = n_before if header else n_before - 1
    columns: Any = range(n_x)
    if header and not has_target and feature_names is not None:
        columns = match_columns(first, list(feature_names), target_name, path)
    elif not has_target:
        check_features(np.empty((0, n_columns)), n_features, path)  # the width, before reading
    X = _read_columns(path, skip, columns, np.float64)
    if not has_target:
        return X, None, first if header else None
    y_text = np.char.strip(_read_columns(path, skip, n_columns - 1, str))
    if detected and not header and not _is_number(y_text[0]) and len(y_text) > 1:
        if all(_is_number(v) for v in y_text[1:]):
            raise ValueError(
                f"{path}: cannot tell whether the first row is a header: its target "
                f"{str(y_text[0])!r} is text over a column of numbers; say which with --header or "
                "--no-header (header=True/False)"
            )
    try:
        y = y_text.astype(np.float64)
    except ValueError:
        # Text labels are class names; they are only valid for classification, which the
        # caller decides and checks.
        y = y_text
    return X, y, first if header else None


def _read_columns(path: str, skip: int, columns: Any, dtype: Any) -> np.ndarray:
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
        except ValueError as exc:
            if dtype is not np.float64:
                raise
            raise ValueError(f"{path}: a feature value is not a number ({exc})") from None


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
