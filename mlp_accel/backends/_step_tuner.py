"""Serial or parallel, by measurement: per network shape and batch size, from the step times
the training loop produces anyway, and measured again when steps slow down (a neighbour
arrived, the cores are throttled). The pools it switches are :mod:`._threads`'.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _threads

__all__ = ["SerialParallelChooser", "StepTuner", "tuner_for"]


class SerialParallelChooser:
    """Chooses serial or parallel for one shape from measured step times.

    Probing times ``warmup + probe_steps`` steps each way (the warm-up steps are discarded:
    they include first-touch and compilation), then keeps the faster mode; parallel steps
    ``decisive`` times slower than serial ones end the probe early. Parallel must win by
    ``min_gain`` to be kept, so that a tie goes to serial, which no neighbour can stall.
    While running, the median of the last ``window`` steps (more for short steps: as many as
    take ``window_seconds``, at most ``max_window``, so that the jitter of 50-microsecond steps
    does not start probes) is compared with the chosen mode's probe median: ``degrade`` times
    slower (a neighbour arrived, the cores are throttled), or for parallel steps slower than
    the time at which serial would have been chosen, starts a new probe. The same happens every
    ``recheck`` steps, doubled after every probe that confirms the choice (hysteresis: a
    stable machine is probed ever more rarely, and a machine that became quiet can win
    parallel back). Serial steps do not speed up when a neighbour leaves, so
    :meth:`observe_spare` tells it how many CPUs stood idle while it ran serially:
    ``spare_gain`` more than when serial was chosen probes parallel again at once (parallel
    only: the serial reference is the recent serial steps).

    Feed it with :meth:`record` after each step and ask :meth:`parallel` before the next;
    both are pure bookkeeping (no clock), so tests drive it with made-up times.
    """

    def __init__(
        self,
        probe_steps: int = 3,
        warmup: int = 1,
        window: int = 5,
        window_seconds: float = 0.02,
        max_window: int = 64,
        degrade: float = 2.0,
        min_gain: float = 1.15,
        recheck: int = 200,
        decisive: float = 3.0,
        spare_gain: float = 0.5,
    ) -> None:
        self.decisive = decisive
        self.spare_gain = spare_gain
        self.probe_steps = probe_steps
        self.warmup = warmup
        self.window = window
        self.window_seconds = window_seconds
        self.max_window = max_window
        self._needed = window  # steps in the compared window, set by each decision
        self.degrade = degrade
        self.min_gain = min_gain
        self.recheck = recheck
        self.choice: bool | None = None  # None while probing the first time
        self.probes = 0
        self.reason = "probing"
        self._plan: list[bool] = []
        self._samples: dict[bool, list[float]] = {False: [], True: []}
        self._baseline = math.inf
        self._flip = math.inf
        self._recent: deque[float] = deque(maxlen=max(window, max_window))
        self._since_probe = 0
        self._next_recheck = recheck
        # Idle CPUs over serial steps: as the probe saw them, and as serial was chosen.
        self._spare: float | None = None
        self._probe_spare: float | None = None
        self._start_probe()

    def _start_probe(self, serial_steps: list[float] | None = None) -> None:
        per_mode = self.warmup + self.probe_steps
        # Serial first, then parallel, each in one block: a parallel step leaves pool
        # threads spinning for a while, which would slow a serial step measured right after
        # it. The first steps of each block are its warm-up.
        self._plan = [True] * per_mode if serial_steps else [False] * per_mode + [True] * per_mode
        self._samples = {False: list(serial_steps or ()), True: []}
        self._seen = {False: 0, True: 0}
        self._spare = self._probe_spare = None
        self.probes += 1

    def observe_spare(self, cpus: float) -> None:
        """Account ``cpus`` CPUs that stood idle (on average) over recent serial steps."""
        if self._plan:
            self._probe_spare = cpus  # the machine as the probe's serial steps saw it
            return
        if self.choice is not False:
            return
        if self._spare is None:
            self._spare = cpus  # the machine since serial was chosen
        elif cpus >= self._spare + self.spare_gain and self._recent:
            self._start_probe(serial_steps=list(self._recent)[-self.window :])
            self.reason = "CPUs became idle: probing parallel again"

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
        needed = self._needed
        # A long window's median is taken every eighth of it: microseconds a step otherwise.
        if (
            len(self._recent) >= needed
            and self._since_probe % max(1, needed // 8) == 0
            and statistics.median(list(self._recent)[-needed:])
            > min(self.degrade * self._baseline, self._flip)
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
        self._spare = None if choice else self._probe_spare
        # Parallel steps slower than the time at which serial, as last measured, would have
        # been chosen mean the choice may be wrong now, even when they are not ``degrade``
        # times slower (parallel at 2 ms against 3 ms serial, slowed to 2.8 ms by a busy
        # neighbour, loses to serial but is only 1.4 times slower). Serial steps that slow
        # down say nothing of the kind: whatever slows them slows a pool more (a neighbour
        # leaving is seen by observe_spare), and at 70-microsecond steps their jitter started
        # a probe, costly beside a neighbour, every few hundred steps.
        self._flip = serial / self.min_gain if choice else math.inf
        self._recent.clear()
        steps = self.window_seconds / self._baseline if self._baseline > 0 else self.max_window
        self._needed = max(self.window, min(self.max_window, math.ceil(steps)))
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
    idle : callable, optional
        ``idle()``: seconds this process's CPUs have stood idle, or ``None`` (see
        :func:`._threads.idle_cpu_seconds`); read around serial steps at most every
        ``spare_every`` seconds, for :meth:`SerialParallelChooser.observe_spare`.
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
        idle: Callable[[], float | None] = _threads.idle_cpu_seconds,
        spare_every: float = 0.5,
    ) -> None:
        self._apply = apply
        self._restore = restore
        self._tune_rows = tune_rows
        self._make = chooser
        self._clock = clock
        self._mode: bool | None = None
        self._modules = 0
        self._idle = idle
        self._spare_every = spare_every
        self._mark: tuple[float, float] | None = None  # (clock, idle seconds) before serial steps
        self.choosers: dict[int, SerialParallelChooser] = {} if choosers is None else choosers

    def _set(self, parallel: bool) -> None:
        # Applied again when a module was imported since: it may have loaded a thread pool.
        if parallel != self._mode or len(sys.modules) != self._modules:
            self._apply(parallel)
            self._mode = parallel
            self._modules = len(sys.modules)
            self._mark = None

    def _watch_spare(self, chooser: SerialParallelChooser, before: bool) -> None:
        """Idle CPUs over serial steps (a probe's, or while serial is chosen), for the
        chooser's :meth:`~SerialParallelChooser.observe_spare`; ``before``: the step is about
        to run."""
        if self._mode or (chooser.choice is not False and not chooser.probing):
            self._mark = None
        elif self._mark is None:
            if before:
                idle = self._idle()
                self._mark = None if idle is None else (self._clock(), idle)
        elif not before and self._clock() - self._mark[0] >= self._spare_every:
            idle, now = self._idle(), self._clock()
            if idle is not None:
                chooser.observe_spare((idle - self._mark[1]) / (now - self._mark[0]))
            self._mark = None

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
            self._watch_spare(chooser, before=True)
            start = self._clock()
            out = step(X, *args, **kwargs)
            chooser.record(self._clock() - start)
            self._watch_spare(chooser, before=False)
            self._set(bool(self._mode))  # a pool loaded during the step gets the mode now
            return out

        return tuned

    def close(self) -> None:
        """Give the pools back their automatic sizes."""
        self._restore()
        self._mode = None


def tuner_for(model: Any) -> StepTuner | None:
    """The step tuner of a model's training, or ``None`` when threads are not tuned.

    Tuned: the numpy and numba backends (CPU) with more than one usable CPU, unless
    :func:`._threads.set_threads` pinned a count. The fused Numba kernel switches between its pool
    of :func:`._threads.pool_size` threads and one thread, with BLAS at one thread throughout; the
    per-layer paths switch BLAS between :func:`._threads.pool_size` threads and one, with Numba's
    kernels beside it serial. Parallel and serial runs of the fused kernel split the batch
    into the same chunks and sum them in the same order, so the choice never changes the
    numbers; a BLAS product gives the same numbers on any thread count (it splits the
    output, not the sums).
    """
    from .numba_backend import NumbaBackend  # numba itself is imported only on its start
    from .numpy_backend import NumpyBackend

    backend = model.backend
    if _threads.pinned_threads() is not None or not isinstance(backend, NumpyBackend):
        return None
    # Each library's count as first seen, to restore: a BLAS may arrive during the fit (Numba's
    # first compile imports SciPy, which loads its own OpenBLAS).
    before = {lib.filepath: (lib, lib.num_threads) for lib in _threads.blas_controllers()}
    fused = model._fused_network() if isinstance(backend, NumbaBackend) else None
    # A limit set outside this module (threadpoolctl's threadpool_limits, numba's
    # set_num_threads, a benchmark's --threads) is a ceiling the tuner keeps.
    if fused is not None:
        numba = sys.modules["numba"]
        size = min(_threads.pool_size(), numba.get_num_threads())
    else:
        size = min(_threads.pool_size(), max((n for _, n in before.values()), default=1))
    if size < 2:
        return None

    def set_blas(count: int) -> None:
        controllers = _threads.blas_controllers()
        for lib in controllers:
            before.setdefault(lib.filepath, (lib, lib.num_threads))
        _threads.set_blas_threads(count, controllers)

    def restore() -> None:
        for lib, count in before.values():
            lib.set_num_threads(count)
        _threads.set_numba_threads(size)

    # Decisions are kept per backend, shape and pool size for the life of the process.
    key = (backend.name, model.spec, fused is not None, size)
    if len(_decisions) > 256 and key not in _decisions:
        _decisions.clear()
    choosers = _decisions.setdefault(key, {})
    if fused is not None:
        min_rows = getattr(fused, "parallel_min_rows", 0)

        def apply(parallel: bool) -> None:
            set_blas(1)  # the fused kernel never calls BLAS: its pool must not spin beside it
            _threads.set_numba_threads(size if parallel else 1)

        return StepTuner(
            apply,
            restore,
            tune_rows=lambda rows: rows >= min_rows,
            choosers=choosers,
        )
    _threads.set_numba_threads(1)  # kernels beside BLAS run serially: BLAS owns the cores

    return StepTuner(lambda parallel: set_blas(size if parallel else 1), restore, choosers=choosers)


_decisions: dict[tuple, dict[int, SerialParallelChooser]] = {}
