"""scikit-learn's MLP against ``mlp_accel.sklearn`` at the same settings, side by side.

On scikit-learn's bundled datasets (digits, breast_cancer, iris: test accuracy; diabetes:
test R²), every estimator is fitted with the same parameters and seeds on the same
standardized split; the table gives the score (mean ± std over seeds), epochs, and the
training time per epoch (median over seeds; fit time / ``n_iter_``).

    PYTHONPATH=. python benchmarks/sklearn_compare.py [--seeds 5] [--backends numpy,numba]

The first fit on each backend is a warm-up (JIT compilation is not timed).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import mlp_accel
from mlp_accel.sklearn import MLPClassifier, MLPRegressor

#: name -> (loader, classification?, shared estimator parameters)
DATASETS: dict[str, tuple[Callable[..., Any], bool, dict[str, Any]]] = {
    "digits": (load_digits, True, {}),
    "breast_cancer": (load_breast_cancer, True, {}),
    "iris": (load_iris, True, {"max_iter": 500}),
    "diabetes": (load_diabetes, False, {}),
}


def make_estimator(library: str, classify: bool, seed: int, params: dict[str, Any]) -> Any:
    """A fresh estimator of ``library`` ("sklearn" or a backend name)."""
    if library == "sklearn":
        cls = SkClassifier if classify else SkRegressor
        est = cls(random_state=seed, **params)
    else:
        cls = MLPClassifier if classify else MLPRegressor
        est = cls(random_state=seed, backend=library, **params)
    # The diabetes target (25 to 346) is standardized for both libraries alike.
    return est if classify else TransformedTargetRegressor(est, transformer=StandardScaler())


def run(dataset: str, library: str, seeds: list[int]) -> dict[str, Any]:
    loader, classify, params = DATASETS[dataset]
    X, y = loader(return_X_y=True)
    scores, per_epoch, epochs = [], [], []
    for seed in seeds:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=seed, stratify=y if classify else None
        )
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        est = make_estimator(library, classify, seed, params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            est.fit(X_train, y_train)
            elapsed = time.perf_counter() - start
        inner = est if classify else est.regressor_
        scores.append(est.score(X_test, y_test))
        epochs.append(inner.n_iter_)
        per_epoch.append(elapsed / inner.n_iter_)
    return {
        "score": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "epochs": float(np.mean(epochs)),
        "ms_per_epoch": 1e3 * float(np.median(per_epoch)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--backends",
        default=",".join(b for b in mlp_accel.available_backends() if b != "cupy"),
        help="comma-separated mlp_accel backends (default: the CPU backends that start here)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads for both libraries (default 1: steadier timings on a shared machine)",
    )
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        compare(args)


def compare(args: argparse.Namespace) -> None:
    """Print the table."""
    seeds = list(range(args.seeds))
    libraries = ["sklearn", *args.backends.split(",")]
    for library in libraries[1:]:  # warm-up: compile/load kernels outside the timings
        for dataset in DATASETS:
            run(dataset, library, [0])
    metric = {True: "accuracy", False: "R²"}
    header = (
        f"{'dataset':<14} {'metric':<9} {'library':<16} {'score':>16} {'epochs':>7} "
        f"{'ms/epoch':>9} {'speedup':>8}"
    )
    print(header)
    print("-" * len(header))
    for dataset, (_, classify, _) in DATASETS.items():
        base = None
        for library in libraries:
            r = run(dataset, library, seeds)
            base = base or r["ms_per_epoch"]
            name = "sklearn" if library == "sklearn" else f"mlp_accel/{library}"
            print(
                f"{dataset:<14} {metric[classify]:<9} {name:<16} "
                f"{r['score']:>8.4f} ± {r['std']:.4f} {r['epochs']:>7.0f} "
                f"{r['ms_per_epoch']:>9.2f} {base / r['ms_per_epoch']:>7.2f}x"
            )
    print(
        f"\n{len(seeds)} seeds, {args.threads} BLAS thread(s); scikit-learn's default parameters "
        "(hidden_layer_sizes=(100,), solver='adam', batch_size=min(200, n), max_iter=200; "
        "iris max_iter=500); standardized features (and diabetes target); 25% test split."
    )


if __name__ == "__main__":
    main()
