"""Does a large batch pay? LAMB (or LARS) at a large batch beside Adam at batch 256.

The problem: ``make_classification(n_samples=1_100_000, n_features=64, n_informative=32,
n_redundant=16, n_classes=4, class_sep=1.0, random_state=0)``, standardized with the first
1,000,000 rows' statistics, which train; the last 100,000 rows are the test set. The network:
``[64, 256, 256, 4]``, ReLU, softmax with cross-entropy, float32, 10 epochs. For each seed,
each learning rate of the grid trains a model (from that seed's initial weights and
shuffles); a run's score is its test accuracy, and the seed's figure is its best rate's. A
layer-wise optimizer warms up for 1 epoch, then follows a cosine over the other 9; Adam keeps
its rate.

Each run prints one JSON line (optimizer, batch, rate, seed, backend, test accuracy, wall
seconds of ``ma.fit``, load average); the summary gives the best rate of each seed. Run from
the repository root, e.g.::

    PYTHONPATH=. python benchmarks/large_batch.py --optimizer adam --batch 256
    PYTHONPATH=. python benchmarks/large_batch.py --optimizer lamb --batch 32768
    PYTHONPATH=. python benchmarks/large_batch.py --optimizer lamb --batch 32768 \\
        --lrs 0.03 --seeds 0 --backend numba          # one run: the wall time on numba

A full grid (5 rates x 3 seeds) of Adam at batch 256 takes about 25 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.getcwd())

import mlp_accel as ma

GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
N_TRAIN = 1_000_000


def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training and test rows, standardized with the training rows' statistics."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=1_100_000,
        n_features=64,
        n_informative=32,
        n_redundant=16,
        n_classes=4,
        class_sep=1.0,
        random_state=0,
    )
    X = X.astype(np.float32)
    mean, scale = X[:N_TRAIN].mean(axis=0), X[:N_TRAIN].std(axis=0)
    X = (X - mean) / scale
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def one_run(data, name: str, batch: int, lr: float, seed: int, backend: str) -> dict:
    """Train one model; its test accuracy and the wall time of the fit."""
    X, y, X_test, y_test = data
    model = ma.MLP(
        [64, 256, 256, 4],
        ["relu", "relu", "softmax"],
        "cross_entropy",
        seed=seed,
        dtype="float32",
        backend=backend,
    )
    optimizer = ma.optim.get_optimizer(name, lr=lr)
    layerwise = name in ("lamb", "lars")
    schedule = ma.schedules.Warmup(1, after=ma.schedules.Cosine(9)) if layerwise else None
    start = time.perf_counter()
    ma.fit(model, X, y, epochs=10, batch_size=batch, optimizer=optimizer, schedule=schedule)
    wall = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    return {
        "optimizer": name,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "backend": backend,
        "accuracy": accuracy,
        "wall_s": round(wall, 2),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="lamb")
    parser.add_argument("--batch", type=int, default=32768)
    parser.add_argument("--lrs", default=",".join(map(str, GRID)))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()
    data = problem()
    runs = []
    for seed in map(int, args.seeds.split(",")):
        for lr in map(float, args.lrs.split(",")):
            runs.append(one_run(data, args.optimizer, args.batch, lr, seed, args.backend))
            print(json.dumps(runs[-1]), flush=True)
    best = {}
    for run in runs:
        if run["seed"] not in best or run["accuracy"] > best[run["seed"]]["accuracy"]:
            best[run["seed"]] = run
    for seed, run in sorted(best.items()):
        print(f"seed {seed}: best lr {run['lr']:g}, test accuracy {run['accuracy']:.5f}")
    mean = np.mean([run["accuracy"] for run in best.values()])
    print(f"mean of the seeds' best: {mean:.5f}")


if __name__ == "__main__":
    main()
