"""Throughput of the one model on every backend, beside the lean reference and the peers.

Each test times one step from :mod:`mlp_accel.bench` and records samples/s and peak memory
in ``extra_info``; benchmarks of the same shape, dtype and step share a pytest-benchmark
group, so the library, the reference and the peers are listed side by side.
"""

from __future__ import annotations

import time

import pytest

from mlp_accel import bench


def _group(shape: bench.Shape, dtype: str, what: str) -> str:
    return f"{shape.name} {dtype} {what}"


# -- the library -----------------------------------------------------------------------------
def test_train_step(measure, workload, backend, shape, dtype, gemm_rate):
    """MLP.train_step (forward + backward + Adam) on device data."""
    measure(
        bench.train_call(workload),
        samples=shape.batch,
        group=_group(shape, dtype, "train"),
        flops=shape.train_flops(),
        backend=backend,
        gemm_gflops=gemm_rate(backend, dtype) if shape.gemm_bound else None,
        impl=backend.name,
        kind="backend",
        step="train_step",
    )


def test_fit(measure, workload, backend, shape, dtype):
    """ma.fit on the full batch: a few epochs per call, samples/s per epoch."""
    step = bench.train_call(workload)
    step()
    t0 = time.perf_counter()
    step()
    epochs = bench.fit_epochs(time.perf_counter() - t0)
    measure(
        bench.fit_call(workload, epochs),
        samples=epochs * shape.batch,
        group=_group(shape, dtype, "train"),
        flops=epochs * shape.train_flops(),
        backend=backend,
        impl=backend.name,
        kind="backend",
        step="fit",
        epochs_per_call=epochs,
    )


def test_inference(measure, workload, backend, shape, dtype):
    """MLP.forward_device on device data."""
    measure(
        bench.infer_call(workload),
        samples=shape.batch,
        group=_group(shape, dtype, "inference"),
        flops=shape.infer_flops(),
        backend=backend,
        impl=backend.name,
        kind="backend",
        step="forward",
    )


# -- the reference -----------------------------------------------------------------------------
def _lean(cached, shape: bench.Shape, dtype: str) -> bench.LeanNumpyMLP:
    return cached(
        ("lean", shape, dtype),
        lambda: bench.LeanNumpyMLP(shape, dtype, bench.host_data(shape, dtype)),
    )


def test_lean_numpy_train(measure, cached, host_shape, dtype):
    """The hand-written NumPy step the library's abstraction is measured against (ref)."""
    measure(
        _lean(cached, host_shape, dtype).train_step,
        samples=host_shape.batch,
        group=_group(host_shape, dtype, "train"),
        flops=host_shape.train_flops(),
        impl="lean-numpy",
        kind="reference",
    )


def test_lean_numpy_inference(measure, cached, host_shape, dtype):
    measure(
        _lean(cached, host_shape, dtype).forward,
        samples=host_shape.batch,
        group=_group(host_shape, dtype, "inference"),
        flops=host_shape.infer_flops(),
        impl="lean-numpy",
        kind="reference",
    )


# -- the peers ---------------------------------------------------------------------------------
PEERS = ["sklearn", "torch-cpu", "torch-cuda"]


def _peer(cached, name: str, shape: bench.Shape, dtype: str) -> bench.Peer:
    if shape.gpu_only and not name.endswith("cuda"):
        pytest.skip(f"{shape.name} is a GPU-only case; the CPU peer {name} skips it")

    def build() -> bench.Peer:
        data = bench.host_data(shape, dtype)
        if name == "sklearn":
            return bench.sklearn_peer(shape, dtype, data)
        return bench.torch_peer(shape, dtype, data, device=name.split("-")[1])

    try:
        return cached(("peer", name, shape, dtype), build)
    except bench.PeerUnavailable as exc:
        pytest.skip(f"peer {name}: {exc}")


@pytest.mark.parametrize("peer_name", PEERS)
def test_peer_train(measure, cached, peer_name, shape, dtype):
    """The same step in another library, labelled as a peer."""
    peer = _peer(cached, peer_name, shape, dtype)
    measure(
        peer.train,
        samples=shape.batch,
        group=_group(shape, dtype, "train"),
        flops=shape.train_flops(),
        impl=peer.name,
        kind="peer",
        label=peer.label,
    )


@pytest.mark.parametrize("peer_name", PEERS)
def test_peer_inference(measure, cached, peer_name, shape, dtype):
    peer = _peer(cached, peer_name, shape, dtype)
    measure(
        peer.infer,
        samples=shape.batch,
        group=_group(shape, dtype, "inference"),
        flops=shape.infer_flops(),
        impl=peer.name,
        kind="peer",
        label=peer.label,
    )


# -- the machine's limit -------------------------------------------------------------------------
def test_gemm_rate(measure, backend, dtype):
    """The backend's matrix product on a large square GEMM: the ceiling for the MLP steps."""
    n = 8192 if bench.is_gpu(backend) else 2048
    call, flops = bench.gemm_call(backend, dtype, n)
    measure(
        call,
        samples=n,
        group=f"GEMM {dtype}",
        flops=flops,
        backend=backend,
        impl=backend.name,
        kind="gemm",
        n=n,
    )
