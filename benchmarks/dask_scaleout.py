"""1 process vs N local Dask workers: steps/s, samples/s, bytes sent per step, and the
compute/communication split, for [784, 1024, 1024, 10] at a large global batch.

    PYTHONPATH=. python benchmarks/dask_scaleout.py --workers 2 --batch 16384 --epochs 3

The data are generated on the workers (``dask.array.random``) and the same rows are pulled to
the driver for the single-process run. The first epoch is warm-up and is not reported.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import dask.array as da
    from distributed import Client, LocalCluster

    import mlp_accel as ma

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16384)
    p.add_argument("--steps-per-epoch", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--backend", default="numpy")
    args = p.parse_args()
    layers = [784, 1024, 1024, 10]
    n = args.batch * args.steps_per_epoch
    rows = -(-n // args.workers)
    rng = da.random.default_rng(0)
    X = rng.standard_normal((n, layers[0]), chunks=(rows, -1)).astype(args.dtype)
    y = rng.integers(0, layers[-1], n, chunks=rows)
    kw = dict(epochs=args.epochs, batch_size=args.batch, shuffle=True)

    def report(name: str, h: ma.History) -> None:
        t = sum(h["time"][1:])
        steps = args.steps_per_epoch * (args.epochs - 1)
        line = f"{name:>18s}: {steps / t:6.3f} steps/s  {steps * args.batch / t:9,.0f} samples/s"
        if "bytes_sent" in h:
            s = sum(h["steps"][1:])
            line += (
                f"  {sum(h['bytes_sent'][1:]) / s / 2**20:6.1f} MiB sent/step"
                f"  compute {sum(h['compute_time'][1:]) / s:.3f} s"
                f"  communication {sum(h['comm_time'][1:]) / s:.3f} s per step"
            )
        print(line, flush=True)

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0")
    with Client(cluster) as client:
        X_host, y_host = client.compute([X, y], sync=True)
        model = ma.MLP(layers, backend=args.backend, dtype=args.dtype, seed=0)
        mib = model.n_params * np.dtype(args.dtype).itemsize / 2**20
        print(
            f"layers {layers}, {args.dtype}, {args.backend}, global batch {args.batch}, "
            f"{model.n_params:,} parameters ({mib:.1f} MiB)",
            flush=True,
        )
        single = model.copy()
        t0 = time.perf_counter()
        report("1 process", ma.fit(single, X_host, y_host, **kw))
        one = time.perf_counter() - t0
        dist = model.copy()
        t0 = time.perf_counter()
        report(f"{args.workers} dask workers", ma.fit(dist, X, y, client=client, **kw))
        print(f"(whole fits: 1 process {one:.1f} s, dask {time.perf_counter() - t0:.1f} s)")
        diff = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), dist.get_weights()))
        print(f"max |weight difference| after {args.epochs} epochs: {diff:.2e}")
    cluster.close()


if __name__ == "__main__":
    main()
