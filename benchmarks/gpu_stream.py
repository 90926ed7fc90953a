"""Streaming a memory-mapped dataset to the GPU: the cupy backend's overlapped copies
(pinned staging buffers, a copy stream) against the generic one-batch-at-a-time copy.

Writes a float32 ``.npy`` table (features + a label column of 10 classes,
``mlp_accel.bench.write_table``) under ``--dir``, then trains one epoch per round with
``ma.fit`` on the memory map, alternating the two ways of copying (the generic one is the same
backend with ``stream_to_device`` left to the base class: ``mlp_accel.bench.with_generic_hooks``),
and prints samples/s for each (median and the rounds), and how far apart the two runs' weights
are (shuffle off: they should be equal).

    python3 benchmarks/gpu_stream.py [--rows 1000000] [--dir /tmp]

``--backend numpy`` runs the same on the CPU (both ways are then the generic copy), to check the
script where there is no GPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import mlp_accel as ma
from mlp_accel import bench
from mlp_accel.backends import Backend

CLASSES = 10


def epoch_seconds(
    backend: Backend, layers: list[int], X: np.ndarray, y: np.ndarray, batch: int
) -> tuple[float, ma.MLP]:
    """Seconds of one ``ma.fit`` epoch on the memory map (device work included); the model."""
    model = ma.MLP(layers, backend=backend, dtype="float32", seed=0)
    t0 = time.perf_counter()
    ma.fit(model, X, y, epochs=1, batch_size=batch, shuffle=False, optimizer=ma.optim.Adam(1e-3))
    backend.synchronize()
    return time.perf_counter() - t0, model


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--backend", default="cupy", help="the backend measured (default cupy)")
    parser.add_argument("--hidden", default="1024,1024", help="hidden layer widths")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.rows, args.features, args.batch, args.rounds) < 1:
        parser.error("--rows, --features, --batch and --rounds must be at least 1")
    try:
        hidden = [int(w) for w in args.hidden.split(",") if w]
    except ValueError:
        parser.error(f"--hidden takes comma-separated widths, got {args.hidden!r}")
    backend = ma.get_backend(args.backend)
    ways = {"overlapped": backend, "generic": bench.with_generic_hooks(backend, "stream_to_device")}
    layers = [args.features, *hidden, CLASSES]
    path = os.path.join(args.dir, "mlp_accel_stream.npy")
    bench.write_table(path, args.rows, args.features, CLASSES)
    try:
        data = np.load(path, mmap_mode="r")
        X, y = data[:, :-1], data[:, -1]
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        weights = {}
        for be in ways.values():  # warm-up on one batch: kernels compiled, buffers made
            epoch_seconds(be, layers, X[: args.batch], y[: args.batch], args.batch)
        for _ in range(args.rounds):
            for way, be in ways.items():
                elapsed, model = epoch_seconds(be, layers, X, y, args.batch)
                seconds[way].append(elapsed)
                weights[way] = model.get_weights()
        gb = data.nbytes / 1e9
        del data, X, y
    finally:
        os.unlink(path)
    diff = max(
        float(np.abs(a - b).max()) for a, b in zip(weights["overlapped"], weights["generic"])
    )
    print(
        f"memory-mapped table: {args.rows:,} rows x {args.features + 1} float32 ({gb:.2f} GB), "
        f"layers {'-'.join(map(str, layers))}, batch {args.batch:,}, one epoch per round, "
        f"{backend.name}"
    )
    rates = {}
    for way, values in seconds.items():
        rates[way] = bench.Timing.of(values).rate(args.rows)[0]
        rounds = ", ".join(f"{args.rows / v:,.0f}" for v in values)
        print(f"{way:10s} median {rates[way]:>12,.0f} samples/s  (rounds: {rounds})")
    ratio = rates["overlapped"] / rates["generic"]
    print(
        f"overlapped / generic: {ratio:.2f}x; largest weight difference between the two: {diff:.3g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
