"""The machine under test: devices, memory, threads, versions, the GEMM rate.

Nothing here imports cupy, numba or torch; they are read from ``sys.modules`` when a backend
or a peer has already loaded them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..backends import Backend
from ..ops.layout import n_parameters
from .blas_check import blas_warnings
from .cases import Shape, gemm_call


# -- devices and memory ---------------------------------------------------------------------
def is_gpu(backend: Backend) -> bool:
    """Whether the backend computes on an accelerator rather than the host CPU."""
    return not str(backend.device).lower().startswith("cpu")


def _cupy() -> Any:
    # cupy is only ever imported by the cupy backend; this module never imports it itself.
    return sys.modules.get("cupy")


def device_memory(backend: Backend) -> dict[str, int] | None:
    """Device memory held by a GPU backend's pool (CuPy), or ``None`` on the CPU."""
    cupy = _cupy()
    if not is_gpu(backend) or cupy is None:
        return None
    pool = cupy.get_default_memory_pool()
    return {"pool_total_bytes": int(pool.total_bytes()), "pool_used_bytes": int(pool.used_bytes())}


def _device_free_bytes(backend: Backend) -> int | None:
    cupy = _cupy()
    if cupy is None:
        return None
    try:
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    except Exception:  # a driver query failing is no reason to stop measuring
        return None


def _bytes_needed(shape: Shape, dtype: str) -> int:
    """A generous estimate of the device memory one workload needs."""
    itemsize = np.dtype(dtype).itemsize
    n_params = n_parameters(shape.layers)
    data = shape.batch * (shape.layers[0] + shape.layers[-1])
    # z and a per layer, their gradients, and a temporary or two: about 4 per activation.
    activations = 4 * shape.batch * sum(shape.layers[1:])
    return int(1.5 * itemsize * (data + activations + 5 * n_params))


def shape_runs_on(shape: Shape, backend: Backend, dtype: str) -> tuple[bool, str]:
    """Whether ``shape`` runs on ``backend``; if not, why (for the skip message)."""
    if not shape.gpu_only:
        return True, ""
    if not is_gpu(backend):
        return False, f"{shape.name} runs only on a GPU; backend {backend.name!r} is on the CPU"
    need = _bytes_needed(shape, dtype)
    free = _device_free_bytes(backend)
    if free is not None and free < need:
        return False, (
            f"{shape.name} {dtype} needs about {need / 2**30:.1f} GiB of device memory; "
            f"{free / 2**30:.1f} GiB free on {backend.name}"
        )
    return True, ""


def reset_peak_rss() -> bool:
    """Reset the process's peak resident set size (Linux ``clear_refs``); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (since the last reset, on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def step_allocation(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated during one call of ``fn``, as :mod:`tracemalloc` sees them.

    Unlike the process's peak RSS, which any earlier step, import or peer sets, this is the
    step's own working memory. tracemalloc sees Python objects and NumPy's array buffers
    (NumPy reports them to it), so it is complete for NumPy and scikit-learn; it does not
    see memory that Numba-compiled code allocates (Numba's own allocator) or PyTorch's
    allocator, so it is a lower bound there.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, int(peak - base))


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other processes' demand), or None if unknown."""
    if not hasattr(os, "getloadavg"):
        return None
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- threads and the machine ---------------------------------------------------------------------
_ACTIVE_THREADS: int | None = None
_RESTORE: list[Callable[[], None]] = []


def limit_torch_threads(torch: Any) -> None:
    """Apply the active limit to PyTorch's CPU pool, remembering how to undo it."""
    if _ACTIVE_THREADS is None or torch.get_num_threads() == _ACTIVE_THREADS:
        return
    before = torch.get_num_threads()
    torch.set_num_threads(_ACTIVE_THREADS)
    _RESTORE.append(lambda: torch.set_num_threads(before))


@contextlib.contextmanager
def thread_limits(threads: int | None) -> Iterator[None]:
    """Limit this package's worker threads, BLAS (for the peers) and PyTorch to ``threads``
    threads; None: leave all.

    PyTorch now if loaded, or when the torch peer starts. Everything is restored on exit.
    """
    global _ACTIVE_THREADS
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from ..backends._threads import threadpoolctl

    with threadpoolctl().threadpool_limits(limits=threads, user_api="blas"):
        _ACTIVE_THREADS = threads
        from ..backends import _threads

        before = _threads.set_threads(threads)
        _RESTORE.append(lambda: _threads.set_threads(before))
        if "torch" in sys.modules:
            limit_torch_threads(sys.modules["torch"])
        try:
            yield
        finally:
            _ACTIVE_THREADS = None
            while _RESTORE:
                _RESTORE.pop()()


def thread_info() -> dict[str, Any]:
    """Thread pools in use: BLAS and OpenMP (threadpoolctl), Numba and PyTorch if loaded."""
    from ..backends._threads import threadpoolctl

    threadpool_info = threadpoolctl().threadpool_info
    pools = [
        {
            "user_api": p.get("user_api"),
            "internal_api": p.get("internal_api"),
            "version": p.get("version"),
            "num_threads": p.get("num_threads"),
            "library": os.path.basename(str(p.get("filepath", ""))),
            # OpenBLAS's kernel set (e.g. "Haswell"): below the CPU, every GEMM is slower.
            "architecture": p.get("architecture"),
        }
        for p in threadpool_info()
    ]
    from ..backends import _threads

    info: dict[str, Any] = {"threadpools": pools, "limit": _ACTIVE_THREADS}
    # The package's own worker threads (Numba's pool is never started: its kernels are serial).
    info["workers"] = _threads.worker_count()
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = int(torch.get_num_threads())
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS") if k in os.environ}
    if env:
        info["environment"] = env
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _versions() -> dict[str, str]:
    from importlib import metadata

    from .. import __version__

    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name in _VERSIONED or name.startswith("cupy"):
            found[name] = dist.version
    versions = {"python": platform.python_version(), "mlp_accel": __version__}
    order = {name: i for i, name in enumerate(_VERSIONED)}
    versions.update(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))
    return versions


_VERSIONED = (
    "numpy",
    "array-api-compat",
    "numba",
    "llvmlite",
    "scikit-learn",
    "threadpoolctl",
    "torch",
    "matplotlib",
    "pytest-benchmark",
)


def _gpu_name(backends: Sequence[Backend]) -> str | None:
    names = []
    for backend in backends:
        if not is_gpu(backend):
            continue
        cupy = _cupy()
        try:
            if cupy is not None:
                props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
                names.append(
                    props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
                )
                continue
        except Exception:  # fall back to what the backend says about itself
            pass
        names.append(str(backend.describe().get("device", backend.device)))
    torch = sys.modules.get("torch")
    if not names and torch is not None and torch.cuda.is_available():
        names.append(torch.cuda.get_device_name())
    return "; ".join(dict.fromkeys(names)) or None


def system_info(backends: Sequence[Backend] = ()) -> dict[str, Any]:
    """The machine and software a result belongs to: CPU, cores, threads, versions, GPU."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = _memory_gib()
    threads = thread_info()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": round(mem, 1) if mem else None,
        # Other processes' load: the numbers of a busy shared machine are to be read with it.
        "load_average": load_average(),
        "gpu": _gpu_name(backends),
        "threads": threads,
        # Conditions that hold every figure of the run below what the machine can do.
        "warnings": blas_warnings(threads["threadpools"]),
        "versions": _versions(),
        "backends": {b.name: b.describe() for b in backends},
    }


def measure_gemm(backend: Backend, dtype: str, n: int | None = None, quick: bool = False) -> dict:
    """The GEMM rate (GFLOP/s) of the backend's matrix product for ``dtype``.

    A square product large enough to reach the BLAS (or cuBLAS) peak: 2048 on a CPU, 8192
    on a GPU. The best of a few calls is taken, since the machine's limit is the question.
    """
    if n is None:
        n = 8192 if is_gpu(backend) else 2048
    call, flops = gemm_call(backend, dtype, n)
    call()
    times = []
    for _ in range(2 if quick else 4):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "backend": backend.name,
        "dtype": dtype,
        "n": n,
        "gflops": flops / best / 1e9,
        # The spread of the calls, as for every other figure: (slowest, fastest) and count.
        "gflops_range": [flops / max(times) / 1e9, flops / best / 1e9],
        "rounds": len(times),
    }
