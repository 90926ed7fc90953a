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
   (:class:`SerialParallelChooser`, driven by :class:`StepTuner` from the step times the
   training loop produces anyway).

:func:`set_threads` (``ma.set_threads``) pins every pool to a fixed count and turns the
measurement off; ``set_threads(None)`` returns to the automatic rule.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "affinity_cpus",
    "cgroup_cpu_limit",
    "usable_cpus",
    "set_threads",
    "threads",
    "pinned_threads",
    "pool_size",
    "configure_numba",
    "SerialParallelChooser",
    "StepTuner",
    "tuner_for",
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


def _blas_controllers() -> list[Any]:
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


def _set_blas(count: int, controllers: list[Any] | None = None) -> None:
    for lib in _blas_controllers() if controllers is None else controllers:
        if lib.num_threads != count:
            lib.set_num_threads(count)


def _set_numba(count: int) -> None:
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
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"threads must be a positive integer or None, got {count!r}")
    previous = _pinned
    _pinned = count
    size = pool_size()
    _set_blas(size)
    _set_numba(size)
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
    _set_numba(pool_size())


# -- serial or parallel, by measurement ------------------------------------------------------


class SerialParallelChooser:
    """Chooses serial or parallel for one shape from measured step times.

    Probing times ``warmup + probe_steps`` steps each way (the warm-up steps are discarded:
    they include first-touch and compilation), then keeps the faster mode; parallel steps
    ``decisive`` times slower than serial ones end the probe early. Parallel must win by
    ``min_gain`` to be kept, so that a tie goes to serial, which no neighbour can stall.
    While running, the median of the last ``window`` steps is compared with the chosen
    mode's probe median: ``degrade`` times slower (a neighbour arrived, the cores are
    throttled) starts a new probe. The same happens every ``recheck`` steps, doubled after
    every probe that confirms the choice (hysteresis: a stable machine is probed ever more
    rarely, and a machine that became quiet can win parallel back).

    Feed it with :meth:`record` after each step and ask :meth:`parallel` before the next;
    both are pure bookkeeping (no clock), so tests drive it with made-up times.
    """

    def __init__(
        self,
        probe_steps: int = 3,
        warmup: int = 1,
        window: int = 5,
        degrade: float = 2.0,
        min_gain: float = 1.15,
        recheck: int = 200,
        decisive: float = 3.0,
    ) -> None:
        self.decisive = decisive
        self.probe_steps = probe_steps
        self.warmup = warmup
        self.window = window
        self.degrade = degrade
        self.min_gain = min_gain
        self.recheck = recheck
        self.choice: bool | None = None  # None while probing the first time
        self.probes = 0
        self.reason = "probing"
        self._plan: list[bool] = []
        self._samples: dict[bool, list[float]] = {False: [], True: []}
        self._baseline = math.inf
        self._recent: deque[float] = deque(maxlen=window)
        self._since_probe = 0
        self._next_recheck = recheck
        self._start_probe()

    def _start_probe(self) -> None:
        per_mode = self.warmup + self.probe_steps
        # Serial first, then parallel, each in one block: a parallel step leaves pool
        # threads spinning for a while, which would slow a serial step measured right after
        # it. The first steps of each block are its warm-up.
        self._plan = [False] * per_mode + [True] * per_mode
        self._samples = {False: [], True: []}
        self._seen = {False: 0, True: 0}
        self.probes += 1

    @property
    def probing(self) -> bool:
        """Whether the next steps are measurements of both modes."""
        return bool(self._plan)

    def parallel(self) -> bool:
        """Whether the next step should run in parallel."""
        if self._plan:
            return self._plan[0]
        return bool(self.choice)

    def record(self, seconds: float) -> None:
        """Account one step, run in the mode :meth:`parallel` gave, that took ``seconds``."""
        if self._plan:
            mode = self._plan.pop(0)
            self._seen[mode] += 1
            if self._seen[mode] > self.warmup:
                self._samples[mode].append(seconds)
            serial, parallel = self._samples[False], self._samples[True]
            # Parallel several times slower than serial on its first timed step (a pool
            # stalled by a busy neighbour) is not worth more slow steps: the probe ends.
            if serial and parallel and min(parallel) > self.decisive * statistics.median(serial):
                self._plan.clear()
            if not self._plan:
                self._decide()
            return
        self._recent.append(seconds)
        self._since_probe += 1
        if len(self._recent) == self.window and (
            statistics.median(self._recent) > self.degrade * self._baseline
        ):
            self._next_recheck = self.recheck  # the machine changed: probe again soon after
            self._start_probe()
            self.reason = "steps slowed down: probing again"
        elif self._since_probe >= self._next_recheck:
            self._start_probe()

    def _decide(self) -> None:
        serial = statistics.median(self._samples[False])
        parallel = statistics.median(self._samples[True])
        choice = parallel * self.min_gain < serial
        if choice == self.choice:
            self._next_recheck *= 2
        self.choice = choice
        self._baseline = parallel if choice else serial
        self._recent.clear()
        self._since_probe = 0
        self.reason = (
            f"{'parallel' if choice else 'serial'}: step {parallel * 1e3:.3g} ms parallel, "
            f"{serial * 1e3:.3g} ms serial"
        )


class StepTuner:
    """Runs a training loop's steps serial or parallel, as :class:`SerialParallelChooser`
    decides per batch size, by switching thread counts (never the numbers: see below).

    Parameters
    ----------
    apply : callable
        ``apply(parallel)`` sets the pools for the next step; called only on a change.
    restore : callable
        Called by :meth:`close`.
    tune_rows : callable
        ``tune_rows(rows)``: whether a batch of that many rows is worth measuring (a batch
        too small for the parallel kernel runs serially either way).
    chooser : callable, optional
        Makes the chooser of one batch-size bucket.
    clock : callable, optional
        The clock (tests pass a fake one).
    choosers : dict, optional
        The choosers per batch-size bucket, shared with earlier fits of the same shape, so
        that a second fit (a warm-up fit, ``partial_fit``, a grid search) starts decided.
    """

    def __init__(
        self,
        apply: Callable[[bool], None],
        restore: Callable[[], None],
        tune_rows: Callable[[int], bool] = lambda rows: True,
        chooser: Callable[[], SerialParallelChooser] = SerialParallelChooser,
        clock: Callable[[], float] = time.perf_counter,
        choosers: dict[int, SerialParallelChooser] | None = None,
    ) -> None:
        self._apply = apply
        self._restore = restore
        self._tune_rows = tune_rows
        self._make = chooser
        self._clock = clock
        self._mode: bool | None = None
        self.choosers: dict[int, SerialParallelChooser] = {} if choosers is None else choosers

    def _set(self, parallel: bool) -> None:
        if parallel != self._mode:
            self._apply(parallel)
            self._mode = parallel

    def wrap(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """``step(X, y, ...)`` timed and run in the chosen mode for ``X``'s row count."""

        def tuned(X: Any, *args: Any, **kwargs: Any) -> Any:
            rows = int(X.shape[0])
            if not self._tune_rows(rows):
                self._set(False)
                return step(X, *args, **kwargs)
            # Batches within a factor of 2 share a choice: the last, short batch of an epoch
            # and a stream of uneven batches do not each start a probe.
            bucket = rows.bit_length()
            chooser = self.choosers.get(bucket)
            if chooser is None:
                chooser = self.choosers[bucket] = self._make()
            self._set(chooser.parallel())
            start = self._clock()
            out = step(X, *args, **kwargs)
            chooser.record(self._clock() - start)
            return out

        return tuned

    def close(self) -> None:
        """Give the pools back their automatic sizes."""
        self._restore()
        self._mode = None


def tuner_for(model: Any) -> StepTuner | None:
    """The step tuner of a model's training, or ``None`` when threads are not tuned.

    Tuned: the numpy and numba backends (CPU) with more than one usable CPU, unless
    :func:`set_threads` pinned a count. The fused Numba kernel switches between its pool
    of :func:`pool_size` threads and one thread, with BLAS at one thread throughout; the
    per-layer paths switch BLAS between :func:`pool_size` threads and one, with Numba's
    kernels beside it serial. Parallel and serial runs of the fused kernel split the batch
    into the same chunks and sum them in the same order, so the choice never changes the
    numbers; a BLAS product gives the same numbers on any thread count (it splits the
    output, not the sums).
    """
    from .numba_backend import NumbaBackend  # numba itself is imported only on its start
    from .numpy_backend import NumpyBackend

    backend = model.backend
    if _pinned is not None or not isinstance(backend, NumpyBackend):
        return None
    controllers = _blas_controllers()
    before = [lib.num_threads for lib in controllers]
    fused = model._fused_network() if isinstance(backend, NumbaBackend) else None
    # A limit set outside this module (threadpoolctl's threadpool_limits, numba's
    # set_num_threads, a benchmark's --threads) is a ceiling the tuner keeps.
    if fused is not None:
        numba = sys.modules["numba"]
        size = min(pool_size(), numba.get_num_threads())
    else:
        size = min(pool_size(), max(before, default=1))
    if size < 2:
        return None

    def set_blas(count: int) -> None:
        _set_blas(count, controllers)

    def restore() -> None:
        for lib, count in zip(controllers, before):
            lib.set_num_threads(count)
        _set_numba(size)

    # Decisions are kept per backend, shape and pool size for the life of the process.
    key = (backend.name, model.spec, fused is not None, size)
    if len(_decisions) > 256 and key not in _decisions:
        _decisions.clear()
    choosers = _decisions.setdefault(key, {})
    if fused is not None:
        set_blas(1)  # the fused kernel never calls BLAS: its pool must not spin beside it
        min_rows = getattr(fused, "parallel_min_rows", 0)
        return StepTuner(
            lambda parallel: _set_numba(size if parallel else 1),
            restore,
            tune_rows=lambda rows: rows >= min_rows,
            choosers=choosers,
        )
    _set_numba(1)  # kernels beside BLAS run serially: BLAS owns the cores

    return StepTuner(lambda parallel: set_blas(size if parallel else 1), restore, choosers=choosers)


_decisions: dict[tuple, dict[int, SerialParallelChooser]] = {}
