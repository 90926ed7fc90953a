"""Thread pools that hold up on a shared machine.

Three rules, each for a failure measured on a 2-core machine with one core kept busy by
another process:

1. **Thread counts come from the CPUs this process may use**: the affinity mask and a
   container's cgroup CPU quota (:func:`usable_cpus`), not the host's core count.
2. **Never two busy pools.** The fused Numba kernel runs with BLAS limited to one thread;
   on the per-layer path BLAS owns the cores and the Numba kernels beside it run serially.
   Numba's OpenMP pool is asked to sleep rather than spin when idle
   (``OMP_WAIT_POLICY=PASSIVE``, which libgomp reads once, when it loads: see
   :func:`configure_numba`).
3. **Serial or parallel is measured, per shape, and measured again when steps slow down**
   (:mod:`._step_tuner`, from the step times the training loop produces anyway).

:func:`set_threads` (``ma.set_threads``) pins every pool to a fixed count and turns the
measurement off; ``set_threads(None)`` returns to the automatic rule.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "affinity_cpus",
    "cgroup_cpu_limit",
    "usable_cpus",
    "idle_cpu_seconds",
    "set_threads",
    "threads",
    "pinned_threads",
    "pool_size",
    "configure_numba",
    "blas_controllers",
    "set_blas_threads",
    "set_numba_threads",
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


def idle_cpu_seconds(root: str | os.PathLike = "/", cpus: set[int] | None = None) -> float | None:
    """Seconds the CPUs of this process's affinity mask have spent idle since boot, from
    ``/proc/stat`` (idle and iowait), or ``None`` where there is no such file.

    Two readings a known time apart give how many CPUs stood idle meanwhile: the step tuner's
    sign that a busy neighbour left (:meth:`._step_tuner.SerialParallelChooser.observe_spare`).

    Parameters
    ----------
    root : path, default "/"
        Where ``proc`` is found (tests pass a directory of fixture files).
    cpus : set of int, optional
        The CPUs to count instead of this process's affinity mask (for tests).
    """
    text = _read(Path(root) / "proc" / "stat")
    if text is None:
        return None
    if cpus is None:
        getter = getattr(os, "sched_getaffinity", None)
        cpus = set(getter(0)) if getter is not None else None
    ticks = 0
    for line in text.splitlines():
        name, _, fields = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        if cpus is None or int(name[3:]) in cpus:
            values = fields.split()
            ticks += int(values[3]) + int(values[4])  # idle, iowait
    return ticks / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else None


# -- the pools -------------------------------------------------------------------------------

_pinned: int | None = None
_usable: int | None = None


def pool_size() -> int:
    """Threads a parallel region may use: the pinned count, else the usable CPUs."""
    global _usable
    if _pinned is not None:
        return _pinned
    if _usable is None:
        _usable = usable_cpus()
    return _usable


def pinned_threads() -> int | None:
    """The count given to :func:`set_threads`, or ``None`` (automatic)."""
    return _pinned


def blas_controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process.

    Finding them walks every loaded shared library (milliseconds, paid by every ``fit``
    before this was kept), so they are kept until the count of imported modules changes:
    a new BLAS arrives with a new extension module (torch, scipy's own build).
    """
    global _controllers
    loaded = len(sys.modules)
    if _controllers is None or _controllers[0] != loaded:
        from threadpoolctl import ThreadpoolController

        found = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        _controllers = (len(sys.modules), found)
    return _controllers[1]


_controllers: tuple[int, list[Any]] | None = None


def set_blas_threads(count: int, controllers: list[Any] | None = None) -> None:
    for lib in blas_controllers() if controllers is None else controllers:
        if lib.num_threads != count:
            lib.set_num_threads(count)


def set_numba_threads(count: int) -> None:
    numba = sys.modules.get("numba")
    if numba is not None and numba.get_num_threads() != min(count, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))


def set_threads(count: int | None) -> int | None:
    """Pin BLAS and Numba to ``count`` threads, or return to the automatic rule with ``None``.

    With a count, every fit uses exactly that many threads and no serial/parallel
    measurement is made (runs are then reproducible bit for bit). ``None``: pools sized to
    :func:`usable_cpus`, serial or parallel measured per shape during training.

    Parameters
    ----------
    count : int or None

    Returns
    -------
    int or None
        The previous setting.

    Raises
    ------
    ValueError
        If ``count`` is not a positive integer or None.
    """
    global _pinned
    if count is not None:
        # Any integer, NumPy's included; bools and floats (even 2.0) are refused.
        try:
            index = None if isinstance(count, bool) else operator.index(count)
        except TypeError:
            index = None
        if index is None or index < 1:
            raise ValueError(f"threads must be a positive integer or None, got {count!r}")
        count = int(index)
    previous = _pinned
    _pinned = count
    size = pool_size()
    set_blas_threads(size)
    set_numba_threads(size)
    return previous


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """``with ma.threads(1): ...``: :func:`set_threads` for a block, restored after it."""
    previous = set_threads(count)
    try:
        yield
    finally:
        set_threads(previous)


_numba_configured = False


def configure_numba(numba: Any) -> None:
    """Make Numba's pool polite, once, before its first parallel kernel starts the pool.

    - ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it): idle OpenMP threads sleep
      instead of spinning against BLAS or another process. libgomp reads it once, when it
      is loaded (Numba loads it when the pool starts): set it in the environment before
      any OpenMP library loads to make it hold for those too. The workqueue layer, which
      never spins, is not forced: it aborts when two Python threads run parallel kernels
      at once.
    - The pool's active size becomes :func:`pool_size` (Numba's default is the host's
      core count, whatever the affinity mask or the container's quota allow).
    """
    global _numba_configured
    if _numba_configured:
        return
    _numba_configured = True
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    set_numba_threads(pool_size())
