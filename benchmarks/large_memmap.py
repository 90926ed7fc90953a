"""Training from a memory-mapped dataset larger than memory would comfortably hold.

Writes a float32 ``.npy`` table (features + a 0/1 label column, ``--gb`` gigabytes,
``mlp_accel.bench.write_table``) unless it exists, then trains with ``ma.fit`` on the memory
map (shuffled blocks of ``--batch`` rows) and reports samples/s per epoch and memory: the peak
resident set (which counts the memory map's file pages the process touched) and the peak
anonymous memory (what the training itself allocated), sampled every 20 ms.

    python benchmarks/large_memmap.py --backend numba --gb 2 --batch 65536 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import numpy as np

import mlp_accel as ma
from mlp_accel import bench


def _rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--gb", type=float, default=2.0, help="size of the table to write")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--layers", default="64,256,256,1")
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--path", default="/tmp/mlp_accel_large.npy")
    args = parser.parse_args()

    rows = int(args.gb * 1e9 / (4 * (args.features + 1)))
    if not os.path.exists(args.path) or np.load(args.path, mmap_mode="r").shape != (
        rows,
        args.features + 1,
    ):
        t0 = time.perf_counter()
        bench.write_table(args.path, rows, args.features, chunk_rows=200_000)
        print(f"wrote {args.path} in {time.perf_counter() - t0:.1f} s")
    data = np.load(args.path, mmap_mode="r")
    X, y = data[:, :-1], data[:, -1]
    size_gb = os.path.getsize(args.path) / 1e9

    layers = [int(w) for w in args.layers.split(",")]
    model = ma.MLP(layers, backend=args.backend, dtype="float32", seed=0)
    model.backend.warmup(model.spec)
    peak_anon = [_rss_anon_kib()]
    base_anon = peak_anon[0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak_anon[0] = max(peak_anon[0], _rss_anon_kib())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    history = ma.fit(
        model,
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch,
        accumulate=args.accumulate,
        optimizer=ma.optim.Adam(1e-3),
    )
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"table: {rows:,} rows x {args.features + 1} float32 = {size_gb:.2f} GB, memory-mapped")
    print(
        f"backend {args.backend}, layers {args.layers}, batch {args.batch:,}, "
        f"accumulate {args.accumulate}, {args.epochs} epochs in {wall:.1f} s"
    )
    for e, (loss, sps) in enumerate(zip(history["loss"], history["samples_per_sec"]), 1):
        print(f"  epoch {e}: loss {loss:.4f}, {sps:,.0f} samples/s")
    print(
        f"peak RSS {peak_rss_mib:,.0f} MiB (includes the map's file pages); peak anonymous "
        f"memory {peak_anon[0] / 1024:,.0f} MiB ({(peak_anon[0] - base_anon) / 1024:,.0f} MiB "
        f"above the process before training)"
    )


if __name__ == "__main__":
    main()
