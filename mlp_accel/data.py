"""Datasets: the tutorial's circles, moons, scikit-learn's bundled sets, and user files.

Every loader returns ``(X, y, task)`` with ``task`` either ``"binary"``, ``"multiclass"`` or
``"regression"``; class labels are integers ``0..k-1``. scikit-learn is imported on use.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DATASETS", "load_dataset", "load_file", "train_test_split", "Standardizer"]

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
    path: str | os.PathLike, has_target: bool = True, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features (and targets) from a file.

    - ``.csv``: a header row, comma-separated numbers; the last column is the target.
    - ``.npy``: a 2-D array; the last column is the target.
    - ``.npz``: arrays ``X`` and (optionally) ``y``.

    With ``has_target=False`` every column of a CSV or ``.npy`` file is a feature. With
    ``mmap=True`` a ``.npy`` file is memory-mapped, not read: ``X`` and ``y`` are views of it.

    Raises
    ------
    ValueError
        Unreadable or non-numeric content, or an unsupported suffix.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".csv":
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
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
            return X, (y if has_target else None)
        else:
            raise ValueError(f"unsupported data file {path!r}: use .csv, .npy or .npz")
    except ValueError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if data.ndim != 2:
        raise ValueError(f"{path} must hold a 2-D table, got shape {data.shape}")
    if not has_target:
        return data, None
    if data.shape[1] < 2:
        raise ValueError(f"{path} needs at least one feature column and a target column")
    return data[:, :-1], data[:, -1]


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
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale
