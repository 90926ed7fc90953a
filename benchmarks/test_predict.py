"""The inference rows: ``MLP.predict_proba`` from a NumPy batch, beside the peers.

One test per backend or peer, network family and batch size (``MLP_ACCEL_BENCH_PREDICT_BATCHES``,
default 1, 64 and 65,536), grouped by network, batch and dtype so that pytest-benchmark lists
them side by side. As in ``mlp-accel bench``: batch 1 runs on one thread, larger batches on the
usable CPUs (at most ``MLP_ACCEL_BENCH_THREADS``).
"""

from __future__ import annotations

import os

import pytest

import mlp_accel as ma
from mlp_accel import bench


def _threads(batch: int) -> int:
    limit = int(os.environ.get("MLP_ACCEL_BENCH_THREADS") or 0) or None
    return bench.predict_threads(batch, limit)


def _model(cached, case, dtype: str) -> ma.MLP:
    shape, _ = case
    return cached(
        ("predict-model", shape.family, dtype),
        lambda: ma.MLP(shape.layers, shape.activations, shape.loss, backend="numpy", dtype=dtype),
    )


def _group(case, dtype: str) -> str:
    shape, batch = case
    return f"predict {shape.family}@{batch} {dtype}"


def test_predict_proba(measure, cached, backend, predict_case, dtype):
    """MLP.predict_proba on host data: validation, the forward pass, the NumPy result."""
    shape, batch = predict_case
    model = _model(cached, predict_case, dtype).to(backend)
    X = bench.predict.host_batch(shape, batch, dtype)
    threads = _threads(batch)
    with bench.predict_scope(threads):
        measure(
            lambda: model.predict_proba(X),
            samples=batch,
            group=_group(predict_case, dtype),
            flops=shape.infer_flops(batch),
            backend=backend,
            impl=backend.name,
            kind="backend",
            step="predict_proba",
            threads=threads,
        )


@pytest.mark.parametrize("peer_name", list(bench.PREDICTORS))
def test_peer_predict_proba(measure, cached, peer_name, predict_case, dtype):
    """The same probabilities from another library, with the model's weights (peer)."""
    shape, batch = predict_case
    model = _model(cached, predict_case, dtype)
    X = bench.predict.host_batch(shape, batch, dtype)
    threads = _threads(batch)
    with bench.predict_scope(threads) as restore:
        try:
            call = bench.PREDICTORS[peer_name](model, X, threads, restore)
        except bench.PeerUnavailable as exc:
            pytest.skip(f"peer {peer_name}: {exc}")
        measure(
            call,
            samples=batch,
            group=_group(predict_case, dtype),
            flops=shape.infer_flops(batch),
            impl=peer_name,
            kind="peer",
            threads=threads,
        )
