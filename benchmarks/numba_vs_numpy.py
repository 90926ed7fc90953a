"""Training throughput of the numba backend against numpy, as users see it through ``ma.fit``.

Each case trains on data of exactly one batch (``batch_size=None``: one step per epoch, so
the per-step Python overhead of ``fit`` counts) and reads samples/s from the history. The
two backends run interleaved, round by round and in alternating order, so that load from
other processes on a shared machine hits both alike; the table reports the median epoch of
each backend and their ratio. Kernels are compiled (``backend.warmup``) and a few epochs run
before anything is timed.

Run from the repository root::

    python benchmarks/numba_vs_numpy.py                 # every case, float32 and float64
    python benchmarks/numba_vs_numpy.py --quick         # fewer rounds
    python benchmarks/numba_vs_numpy.py --cases tutorial-1k --dtypes float32
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import mlp_accel as ma

#: name -> (layers, batch, target speed-up of numba over numpy)
CASES = {
    "tutorial-1k": ([2, 4, 3, 1], 1_000, 5.0),
    "tutorial-100k": ([2, 4, 3, 1], 100_000, 10.0),
    "mlp256-1024": ([64, 256, 256, 10], 1_024, 1.15),
    "mnist-4096": ([784, 1024, 1024, 10], 4_096, 0.95),
}


def _model(layers: list[int], backend: str, dtype: str) -> ma.MLP:
    out = ["sigmoid"] if layers[-1] == 1 else ["softmax"]
    acts = ["relu"] * (len(layers) - 2) + out
    loss = "binary_cross_entropy" if layers[-1] == 1 else "cross_entropy"
    return ma.MLP(layers, acts, loss, backend=backend, dtype=dtype, seed=0)


def _data(layers: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, layers[0]))
    if layers[-1] == 1:
        return X, rng.integers(0, 2, n).astype(float)
    return X, rng.integers(0, layers[-1], n)


def measure(layers: list[int], n: int, dtype: str, rounds: int, seconds: float) -> dict[str, float]:
    """Median samples/s of numpy and numba, interleaved over ``rounds`` rounds."""
    X, y = _data(layers, n)
    runs = {}
    for name in ("numpy", "numba"):
        model = _model(layers, name, dtype)
        model.backend.warmup(model.spec)
        Xd, yd = model.prepare(X, y)  # validated and on the device once, outside the timing
        optimizer = ma.optim.Adam(1e-4)
        t0 = time.perf_counter()
        ma.fit(model, Xd, yd, epochs=3, optimizer=optimizer, shuffle=False)
        per_epoch = (time.perf_counter() - t0) / 3
        epochs = max(1, min(2000, int(seconds / max(per_epoch, 1e-9))))
        runs[name] = (model, Xd, yd, optimizer, epochs)
    samples: dict[str, list[float]] = {"numpy": [], "numba": []}
    for r in range(rounds):
        order = ("numpy", "numba") if r % 2 == 0 else ("numba", "numpy")
        for name in order:
            model, Xd, yd, optimizer, epochs = runs[name]
            history = ma.fit(model, Xd, yd, epochs=epochs, optimizer=optimizer, shuffle=False)
            samples[name] += history["samples_per_sec"]
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4, help="per backend and round")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.2 s")
    args = parser.parse_args(argv)
    rounds, seconds = (3, 0.2) if args.quick else (args.rounds, args.seconds)
    info = ma.get_backend("numba").describe()
    print(
        f"numba {info['numba']} ({info['threading_layer']}, {info['threads']} threads); "
        f"BLAS: {info['blas']}"
    )
    header = f"{'case':<14} {'dtype':<8} {'numpy samples/s':>16} {'numba samples/s':>16}"
    print(f"{header} {'numba/numpy':>12} {'target':>7}")
    for case in args.cases.split(","):
        layers, n, target = CASES[case]
        for dtype in args.dtypes.split(","):
            result = measure(layers, n, dtype, rounds, seconds)
            ratio = result["numba"] / result["numpy"]
            mark = "" if ratio >= target else "  (below target)"
            print(
                f"{case:<14} {dtype:<8} {result['numpy']:>16,.0f} {result['numba']:>16,.0f} "
                f"{ratio:>11.2f}x {target:>6.2f}x{mark}",
                flush=True,
            )


if __name__ == "__main__":
    main()
