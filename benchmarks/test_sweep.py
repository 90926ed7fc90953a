"""Batch-size sweep: train-step throughput against batch size, per backend.

Batches 2^6 .. 2^17 on the tutorial network and on [64, 256, 256, 10], in the first selected
dtype (float32 by default). ``mlp-accel bench`` runs the same sweep, prints the crossover
points and plots the curves.
"""

from __future__ import annotations

from mlp_accel import bench


def test_sweep_train_step(measure, cached, backend, sweep_shape, sweep_dtype, sweep_max_batch):
    """One model per backend at the largest batch; each case trains on its first rows."""
    family = bench.SWEEP_FAMILIES[sweep_shape.family]
    work = cached(
        ("sweep", backend.name, sweep_shape.family, sweep_dtype, sweep_max_batch),
        lambda: bench.make_workload(backend, family.with_batch(sweep_max_batch), sweep_dtype),
    )
    measure(
        bench.train_call(work, sweep_shape.batch),
        samples=sweep_shape.batch,
        group=f"sweep {sweep_shape.family} {sweep_dtype}",
        flops=sweep_shape.train_flops(),
        backend=backend,
        impl=backend.name,
        kind="backend",
        batch=sweep_shape.batch,
    )
