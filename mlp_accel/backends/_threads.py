"""How many threads the package uses, from the CPUs this process may use.

- **Thread counts come from the CPUs this process may use**: the affinity mask and a
  container's cgroup CPU quota (:func:`usable_cpus`), not the host's core count.
- **Threads change the time, never the bits.** A CPU batch is split into chunks fixed by the
  job (``_chunks.chunk_plan``); the package's worker threads take chunks as they free up
  (a thread on a busy core takes fewer), and BLAS is held to one thread while they run
  (:func:`single_threaded_blas`), since OpenBLAS rounds differently with more threads.
- **Nothing process-wide is left changed**: BLAS's own thread count is restored when the
  last running batch ends, the environment is never written, and Numba's own thread pool
  is never started (every kernel is serial).

:func:`set_threads` (``ma.set_threads``) sets the number of worker threads;
``set_threads(None)`` returns to :func:`usable_cpus`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "affinity_cpus",
    "cgroup_cpu_limit",
    "usable_cpus",
    "set_threads",
    "threads",
    "pinned_threads",
    "worker_count",
    "blas_controllers",
    "single_threaded_blas",
]

# -- how many CPUs ---------------------------------------------------------------------------


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where there is no mask)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        try:
            return max(1, len(getter(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(text: str | None) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``)."""
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(quota_text: str | None, period_text: str | None) -> float | None:
    """CPUs of cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none)."""
    try:
        quota = int(quota_text or "")
        period = int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """``base/a/b``, ``base/a``, ``base``: a parent's quota limits its children too."""
    parts = [p for p in cgroup_path.split("/") if p]
    return [base.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: str | os.PathLike = "/") -> float | None:
    """The CPU quota of this process's cgroup, in CPUs, or ``None`` when there is none.

    Reads ``/proc/self/cgroup`` to find the process's cgroup, then cgroup v2's ``cpu.max``
    or v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in that cgroup and its ancestors
    (the smallest quota wins). Inside a container the cgroup path often names the host's
    hierarchy while the container sees its own cgroup mounted at the root, so the root of
    the mount is read as well.

    Parameters
    ----------
    root : path, default "/"
        Where ``proc`` and ``sys`` are found; tests pass a folder of fixture files.
    """
    root = Path(root)
    text = _read(root / "proc" / "self" / "cgroup")
    if text is None:
        return None
    limits: list[float] = []
    cgroup_root = root / "sys" / "fs" / "cgroup"
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # cgroup v2, the unified hierarchy
            for directory in _ancestors(cgroup_root, path):
                limit = _v2_limit(_read(directory / "cpu.max"))
                if limit is not None:
                    limits.append(limit)
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu,cpuacct", "cpuacct,cpu", "cpu"):
                base = cgroup_root / mount
                if not base.is_dir():
                    continue
                for directory in _ancestors(base, path):
                    limit = _v1_limit(
                        _read(directory / "cpu.cfs_quota_us"),
                        _read(directory / "cpu.cfs_period_us"),
                    )
                    if limit is not None:
                        limits.append(limit)
                break
    return min(limits) if limits else None


def usable_cpus(root: str | os.PathLike = "/", affinity: int | None = None) -> int:
    """CPUs this process may really keep busy: the smaller of its affinity mask and its cgroup
    quota (rounded down: a thread more than the quota is throttled, and a parallel region
    waits for its slowest thread), at least 1.

    Parameters
    ----------
    root : path, default "/"
        Where ``proc`` and ``sys`` are found (see :func:`cgroup_cpu_limit`).
    affinity : int, optional
        The affinity count to use instead of this process's (for tests).
    """
    count = affinity_cpus() if affinity is None else int(affinity)
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


# -- the pools -------------------------------------------------------------------------------

_pinned: int | None = None
_usable: int | None = None


def worker_count() -> int:
    """Threads that run the chunks of a batch: the count given to :func:`set_threads`, else
    the usable CPUs."""
    global _usable
    if _pinned is not None:
        return _pinned
    if _usable is None:
        _usable = usable_cpus()
    return _usable


def pinned_threads() -> int | None:
    """The count given to :func:`set_threads`, or ``None`` (automatic)."""
    return _pinned


def threadpoolctl() -> Any:
    """The ``threadpoolctl`` module, imported with the user's environment left as it was.

    Importing it sets ``KMP_DUPLICATE_LIB_OK`` in ``os.environ`` (for programs that mix
    OpenMP runtimes); this package writes no environment variable, so a value that was not
    there before the import is taken out again. A program that imported threadpoolctl itself
    (scikit-learn does) had it set already and keeps it.
    """
    module = sys.modules.get("threadpoolctl")
    if module is not None:
        return module
    had = "KMP_DUPLICATE_LIB_OK" in os.environ
    import threadpoolctl as module

    if not had:
        os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
    return module


def blas_controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process.

    Finding them walks every loaded shared library (milliseconds), so they are kept until
    the count of imported modules changes: a new BLAS arrives with a new extension module
    (torch, SciPy's own build).
    """
    global _controllers
    loaded = len(sys.modules)
    if _controllers is None or _controllers[0] != loaded:
        controller = threadpoolctl().ThreadpoolController()
        found = list(controller.select(user_api="blas").lib_controllers)
        _controllers = (len(sys.modules), found)
    return _controllers[1]


_controllers: tuple[int, list[Any]] | None = None


def _thread_functions(lib: Any) -> tuple[Any, Any]:
    """``(get, set)`` of a BLAS library's thread count.

    OpenBLAS's own C functions where threadpoolctl exposes them: its controller lets one
    Python thread set the count and silently ignores the others (a fit may run in any
    thread), and a direct call costs a fraction of a microsecond, paid twice a batch.
    """
    symbol = getattr(lib, "_get_symbol", None)
    if getattr(lib, "internal_api", None) == "openblas" and symbol is not None:
        getter = symbol("openblas_get_num_threads")
        setter = symbol("openblas_set_num_threads")
        if getter is not None and setter is not None:
            return getter, setter
    return lib.get_num_threads, getattr(lib, "_real_set_num_threads", lib.set_num_threads)


class _SingleThreadedBlas:
    """The context of :func:`single_threaded_blas`: one process-wide count of holders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._libraries: tuple[list[Any], list[tuple[Any, Any]]] = ([], [])
        self._saved: dict[int, tuple[Any, int]] = {}

    def _functions(self) -> list[tuple[Any, Any]]:
        libs = blas_controllers()
        if libs is not self._libraries[0]:  # found again: a module was imported
            self._libraries = (libs, [_thread_functions(lib) for lib in libs])
        return self._libraries[1]

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = {}
            for get, set_ in self._functions():
                if id(get) not in self._saved:
                    count = get()
                    self._saved[id(get)] = (set_, count)
                    if count != 1:
                        set_(1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for set_, count in self._saved.values():
                    if count not in (1, None):
                        set_(count)
                self._saved = {}


_single_threaded_blas = _SingleThreadedBlas()


def single_threaded_blas() -> contextlib.AbstractContextManager[None]:
    """Hold every loaded BLAS library to one thread for a ``with`` block.

    Counted across threads: the first block to enter sets one thread, the last to leave
    restores what each library had, so two fits in two threads neither undo each other's
    setting nor leave BLAS changed. A library loaded during the block (a first import of
    SciPy) gets one thread on the next block and is restored like the others.
    """
    return _single_threaded_blas


def set_threads(count: int | None) -> int | None:
    """Set how many threads run the chunks of a batch, or ``None`` for :func:`usable_cpus`.

    The count changes the speed only: a fit gives the same bits with any count.

    Parameters
    ----------
    count : int or None
        A positive integer (NumPy's integers included), or ``None``.

    Returns
    -------
    int or None
        The previous setting.

    Raises
    ------
    TypeError
        If ``count`` is a bool, a float or not an integer.
    ValueError
        If ``count`` is below 1.
    """
    global _pinned
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, numbers.Integral):
            raise TypeError(f"threads must be a positive integer or None, got {count!r}")
        if count < 1:
            raise ValueError(f"threads must be a positive integer or None, got {count!r}")
        count = int(count)
    previous = _pinned
    _pinned = count
    return previous


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """``with ma.threads(1): ...``: :func:`set_threads` for a block, restored after it."""
    previous = set_threads(count)
    try:
        yield
    finally:
        set_threads(previous)
