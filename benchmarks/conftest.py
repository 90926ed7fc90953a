"""The pytest-benchmark suite's parameters and fixtures: backend x shape x dtype.

Run ``pytest benchmarks --benchmark-only``. Every registered backend is a parameter; one that
cannot start here is skipped with the reason, and so is a GPU-only case on a CPU backend.
The measured steps come from :mod:`mlp_accel.bench`, the same code ``mlp-accel bench`` times.

Environment variables narrow or tune the run:

- ``MLP_ACCEL_BENCH_BACKENDS``, ``MLP_ACCEL_BENCH_SHAPES``, ``MLP_ACCEL_BENCH_DTYPES``:
  comma-separated names (default: all).
- ``MLP_ACCEL_BENCH_THREADS``: limit BLAS, Numba and PyTorch threads (default: leave them).
- ``MLP_ACCEL_BENCH_MIN_TIME``: seconds of timed rounds per benchmark (default 0.5).
- ``MLP_ACCEL_BENCH_SWEEP``: batch sizes of the sweep (default 2^6..2^17).
- ``MLP_ACCEL_BENCH_PREDICT_BATCHES``: batch sizes of the inference rows (default 1, 64,
  65,536).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlp_accel import bench
from mlp_accel.backends import BACKENDS, Backend, BackendUnavailableError, get_backend


def _env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    return [v.strip() for v in value.split(",") if v.strip()] or default


BACKEND_NAMES = _env_list("MLP_ACCEL_BENCH_BACKENDS", list(BACKENDS))
SHAPE_NAMES = _env_list("MLP_ACCEL_BENCH_SHAPES", list(bench.SHAPES))
DTYPE_NAMES = _env_list("MLP_ACCEL_BENCH_DTYPES", list(bench.DTYPES))
THREADS = int(os.environ.get("MLP_ACCEL_BENCH_THREADS") or 0) or None
MIN_TIME = float(os.environ.get("MLP_ACCEL_BENCH_MIN_TIME") or 0.5)
SWEEP = [int(b) for b in _env_list("MLP_ACCEL_BENCH_SWEEP", [])] or bench.sweep_batches()
PREDICT = [int(b) for b in _env_list("MLP_ACCEL_BENCH_PREDICT_BATCHES", [])] or list(
    bench.PREDICT_BATCHES
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "backend_name" in names:
        metafunc.parametrize("backend_name", BACKEND_NAMES)
    if "shape" in names:
        shapes = [bench.SHAPES[name] for name in SHAPE_NAMES]
        metafunc.parametrize("shape", shapes, ids=[s.name for s in shapes])
    if "dtype" in names:
        metafunc.parametrize("dtype", DTYPE_NAMES)
    if "predict_case" in names:
        # The inference rows: the network of each selected case's family at each batch.
        families = {bench.SHAPES[name].family: bench.SHAPES[name] for name in SHAPE_NAMES}
        cases = [(shape, b) for shape in families.values() for b in PREDICT]
        metafunc.parametrize("predict_case", cases, ids=[f"{s.family}@{b}" for s, b in cases])
    if "sweep_shape" in names:
        # The sweep runs in the first dtype only, like ``mlp-accel bench``.
        cases = [f.with_batch(b) for f in bench.SWEEP_FAMILIES.values() for b in SWEEP]
        metafunc.parametrize("sweep_shape", cases, ids=[s.name for s in cases])


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict) -> None:
    """Put the CPU model, thread pools, library versions and GPU into the saved JSON."""
    started = []
    for name in BACKEND_NAMES:
        try:
            started.append(get_backend(name))
        except (BackendUnavailableError, ValueError):
            pass
    machine_info["mlp_accel"] = bench.system_info(started)


@pytest.fixture(scope="session", autouse=True)
def _thread_limits() -> Iterator[None]:
    with bench.thread_limits(THREADS):
        yield


@pytest.fixture
def backend(backend_name: str) -> Backend:
    """A backend that starts here (others skip with the reason)."""
    try:
        return get_backend(backend_name)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


# One live workload or peer at a time: the large cases would otherwise pile up in memory.
_CACHE: dict[tuple, Any] = {}


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE.clear()
        gc.collect()
        _CACHE[key] = build()
    return _CACHE[key]


@pytest.fixture
def cached() -> Callable[[tuple, Callable[[], Any]], Any]:
    """``cached(key, build)``: reuse what the previous test built for the same key."""
    return _cached


@pytest.fixture
def sweep_dtype() -> str:
    """The sweep's dtype: the first selected dtype."""
    return DTYPE_NAMES[0]


@pytest.fixture
def sweep_max_batch() -> int:
    """The largest sweep batch: each backend builds one workload of that size and slices it."""
    return max(SWEEP)


@pytest.fixture
def workload(backend: Backend, shape: bench.Shape, dtype: str) -> bench.Workload:
    """The model on ``backend`` with its batch on the device (built outside the timing)."""
    ok, why = bench.shape_runs_on(shape, backend, dtype)
    if not ok:
        pytest.skip(why)
    return _cached(
        ("workload", backend.name, shape, dtype),
        lambda: bench.make_workload(backend, shape, dtype),
    )


@pytest.fixture
def host_shape(shape: bench.Shape) -> bench.Shape:
    """A case the CPU implementations (reference, CPU peers) run: not the GPU-only one."""
    if shape.gpu_only:
        pytest.skip(f"{shape.name} is a GPU-only case; CPU references and peers skip it")
    return shape


_GEMM: dict[tuple[str, str], float] = {}


@pytest.fixture
def gemm_rate() -> Callable[[Backend, str], float]:
    """GFLOP/s of the backend's matrix product in a dtype, measured once per session."""

    def rate(backend: Backend, dtype: str) -> float:
        key = (backend.name, dtype)
        if key not in _GEMM:
            _GEMM[key] = bench.measure_gemm(backend, dtype, quick=True)["gflops"]
        return _GEMM[key]

    return rate


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., None]:
    """Time a call with pytest-benchmark and record samples/s and memory in ``extra_info``.

    ``measure(call, samples=..., group=..., flops=..., backend=..., gemm_gflops=..., **info)``:
    ``samples`` per call gives samples/s; ``flops`` per call gives GFLOP/s and, with
    ``gemm_gflops``, the fraction of the GEMM rate. Rounds are sized so that each test takes
    about ``MLP_ACCEL_BENCH_MIN_TIME`` seconds, with at least three.
    """

    def run(
        call: Callable[[], Any],
        *,
        samples: int,
        group: str,
        flops: float | None = None,
        backend: Backend | None = None,
        gemm_gflops: float | None = None,
        **info: Any,
    ) -> None:
        benchmark.group = group
        call()  # JIT warm-up and first-touch allocations, untimed
        bench.reset_peak_rss()
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        peak_rss = bench.peak_rss_bytes()
        step_alloc = bench.step_allocation(call)  # the step's own memory, not the process's
        iterations = max(1, round(0.01 / max(first, 1e-7)))
        rounds = max(3, min(200, round(MIN_TIME / max(first * iterations, 1e-7))))
        benchmark.pedantic(
            call, rounds=rounds, iterations=iterations, warmup_rounds=1 if first < 0.1 else 0
        )
        extra = benchmark.extra_info
        extra.update(
            info,
            samples_per_call=samples,
            process_peak_rss_bytes=peak_rss,
            step_alloc_bytes=step_alloc,
            # The load it was measured under (pytest-benchmark's stats give the spread).
            load_average=bench.load_average(),
        )
        if backend is not None:
            extra.update(bench.device_memory(backend) or {})
        if getattr(benchmark, "disabled", False) or benchmark.stats is None:
            return
        median = benchmark.stats.stats.median
        extra["samples_per_sec"] = samples / median
        if flops is not None:
            extra["gflops"] = flops / median / 1e9
            if gemm_gflops:
                extra["gemm_gflops"] = gemm_gflops
                extra["gemm_fraction"] = extra["gflops"] / gemm_gflops

    return run
