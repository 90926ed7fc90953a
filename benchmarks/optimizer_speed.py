"""A training step with each optimizer beside Adam's, and the update's memory bandwidth.

For each CPU backend (numpy, numba) and network (``64-256-256-10 @ 1,024`` and
``784-1024-1024-10 @ 4,096``, float32; ReLU hidden layers, softmax + cross-entropy), times in
interleaved rounds (:func:`mlp_accel.bench.time_interleaved_stats`, median of the rounds):

- a full :meth:`MLP.train_step` (forward, backward, update) with Adam and with each optimizer
  of the table, each on its own copy of the model;
- the update alone (``optimizer.step`` on the model's parameters and fixed gradients), and a
  NumPy copy of as many elements (``np.copyto``). The update's rate is the bytes its rule
  must read and write (``--`` below: the arrays each pass loads and stores, times the
  parameter count and the item size) over its time; the copy's, 2 x 4 bytes per element.

Run from the repository root::

    PYTHONPATH=. python benchmarks/optimizer_speed.py [--min-time 2] [--threads 1]

Figures depend on the machine's load: read them beside ``uptime``, which the script prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.getcwd())

import mlp_accel as ma
from mlp_accel.bench.cases import make_workload, network_shape
from mlp_accel.bench.timing import time_interleaved_stats

SHAPES = [([64, 256, 256, 10], 1024), ([784, 1024, 1024, 10], 4096)]
#: name -> (optimizer at a tiny rate (the timed updates must not drift), arrays touched per
#: element per update: loads + stores over every pass)
OPTIMIZERS = {
    "adam": (lambda: ma.optim.Adam(1e-6), 4 + 3),
    "adamw": (lambda: ma.optim.AdamW(1e-6), 4 + 3),
    "rmsprop": (lambda: ma.optim.RMSprop(1e-6), 3 + 2),
    "rmsprop c+m": (lambda: ma.optim.RMSprop(1e-6, momentum=0.9, centered=True), 5 + 4),
    "adagrad": (lambda: ma.optim.Adagrad(1e-6), 3 + 2),
    "lars": (lambda: ma.optim.LARS(1e-6), 2 + (3 + 2)),
    "lamb": (lambda: ma.optim.LAMB(1e-6), (4 + 2) + (3 + 1)),
}


def _update_call(backend, model, make):
    params = [backend.copy(p) for p in model.params]
    rng = np.random.default_rng(0)
    grads = [backend.asarray(rng.standard_normal(p.shape) * 1e-3, "float32") for p in params]
    opt = make()
    state = {"params": params}

    def call() -> None:
        state["params"] = opt.step(state["params"], grads, backend)

    return call


def measure(backend: str, layers: list[int], batch: int, min_time: float) -> None:
    work = make_workload(backend, network_shape(layers, batch), "float32")
    be, n = work.backend, sum(int(np.prod(p.shape)) for p in work.model.params)
    steps, updates = {}, {}
    for name, (make, _) in OPTIMIZERS.items():
        model, opt = work.model.copy(), make()
        steps[name] = lambda model=model, opt=opt: model.train_step(work.X, work.Y, opt)
        updates[name] = _update_call(be, work.model, make)
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    calls = {("step", k): f for k, f in steps.items()}
    calls.update({("update", k): f for k, f in updates.items()})
    calls[("copy", "")] = lambda: np.copyto(dst, src)
    for fn in calls.values():  # compiles and first touches, untimed
        fn()
    t = time_interleaved_stats(calls, min_time=min_time, min_rounds=5)
    copy = t[("copy", "")].median
    copy_rate = 8 * n / copy / 1e9
    print(f"\n{backend} {'-'.join(map(str, layers))} @ {batch}, float32, {n:,} parameters")
    print(f"copy: {copy * 1e6:.0f} us = {copy_rate:.1f} GB/s")
    print("| optimizer | step ms (min-max) | vs adam | update us | update GB/s | of copy |")
    print("|---|---:|---:|---:|---:|---:|")
    adam = t[("step", "adam")].median
    for name, (_, touched) in OPTIMIZERS.items():
        s, u = t[("step", name)], t[("update", name)]
        rate = touched * 4 * n / u.median / 1e9
        print(
            f"| {name} | {s.median * 1e3:.2f} ({s.low * 1e3:.2f}-{s.high * 1e3:.2f}) | "
            f"{s.median / adam:.3f} | {u.median * 1e6:.0f} | {rate:.1f} | {rate / copy_rate:.2f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", default="numpy,numba")
    args = parser.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    from threadpoolctl import threadpool_limits

    with ma.threads(args.threads), threadpool_limits(args.threads):
        for backend in args.backends.split(","):
            for layers, batch in SHAPES:
                measure(backend, layers, batch, args.min_time)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
