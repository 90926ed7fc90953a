"""Streaming a memory-mapped dataset to the GPU: the cupy backend's overlapped copies
(pinned staging buffers, a copy stream) against the generic one-batch-at-a-time copy.

Writes a float32 ``.npy`` table (features + a label column) under ``--dir``, then trains one
epoch per round with ``ma.fit`` on the memory map, alternating the two ways of copying, and
prints samples/s for each, and how far apart the two runs' weights are (shuffle off: they
should be equal).

    python3 benchmarks/gpu_stream.py [--rows 1000000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import mlp_accel as ma
from mlp_accel.backends.base import Backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()

    path = os.path.join(args.dir, "mlp_accel_stream.npy")
    rng = np.random.default_rng(0)
    table = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(args.rows, args.features + 1)
    )
    for start in range(0, args.rows, 100_000):
        stop = min(start + 100_000, args.rows)
        table[start:stop, :-1] = rng.standard_normal(
            (stop - start, args.features), dtype=np.float32
        )
        table[start:stop, -1] = rng.integers(0, 10, stop - start)
    table.flush()
    del table
    data = np.load(path, mmap_mode="r")
    X, y = data[:, :-1], data[:, -1]
    gb = data.nbytes / 1e9

    backend = ma.get_backend("cupy")
    layers = [args.features, 1024, 1024, 10]
    results: dict[str, list[float]] = {"overlapped": [], "generic": []}
    weights = {}
    for _ in range(args.rounds):
        for mode in results:
            model = ma.MLP(layers, backend=backend, dtype="float32", seed=0)
            if mode == "generic":
                backend.stream_to_device = Backend.stream_to_device.__get__(backend)
            try:
                t0 = time.perf_counter()
                ma.fit(
                    model,
                    X,
                    y,
                    epochs=1,
                    batch_size=args.batch,
                    shuffle=False,
                    optimizer=ma.optim.Adam(1e-3),
                )
                backend.synchronize()
                results[mode].append(args.rows / (time.perf_counter() - t0))
            finally:
                backend.__dict__.pop("stream_to_device", None)
            weights[mode] = model.get_weights()
    diff = max(
        float(np.abs(a - b).max()) for a, b in zip(weights["overlapped"], weights["generic"])
    )
    print(
        f"memory-mapped table: {args.rows:,} rows x {args.features + 1} float32 ({gb:.2f} GB), "
        f"layers {'-'.join(map(str, layers))}, batch {args.batch:,}, one epoch per round"
    )
    for mode, values in results.items():
        print(
            f"{mode:10s} median {statistics.median(values):>12,.0f} samples/s  "
            f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})"
        )
    ratio = statistics.median(results["overlapped"]) / statistics.median(results["generic"])
    print(
        f"overlapped / generic: {ratio:.2f}x; largest weight difference between the two: {diff:.3g}"
    )
    os.unlink(path)


if __name__ == "__main__":
    main()
