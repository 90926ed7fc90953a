"""Fixed chunks of a batch, run on the package's own worker threads.

A CPU batch is split into chunks of rows whose size is fixed by the network and the batch
(:func:`chunk_plan`), never by the thread count, the load or a timing. Each chunk's loss and
gradients are computed single-threaded (the Numba kernels, or NumPy with BLAS held to one
thread), and the sums are added in chunk order. So the bits of a step depend on the job
only; which thread ran which chunk, and how many threads ran, change only the time.

The workers take chunks from a shared counter, so a thread whose core is busy with another
process simply takes fewer of them: the load adapts the speed, never the result. The calling
thread works too; the workers are daemon threads of this process (there is no child process)
and a fork leaves the child a fresh pool.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from . import _threads

__all__ = [
    "ChunkPool",
    "chunk_plan",
    "run_chunks",
    "over_chunks",
    "add_parts",
    "sum_loss_and_gradients",
    "TARGET_FLOPS",
    "MIN_ROWS",
    "MAX_ROWS",
]

#: Floating-point operations a chunk aims at (forward and backward, ``6 x weights`` a row):
#: about a quarter of a millisecond of one core, so handing a chunk to a thread (tens of
#: microseconds) stays a small share of it.
TARGET_FLOPS = 1 << 24
#: Fewest rows in a chunk: matrix products of fewer rows run well below BLAS's rate.
MIN_ROWS = 256
#: Most rows in a chunk: enough for a 2-core or 64-core machine to share a large batch.
MAX_ROWS = 16384
#: Chunk sizes are a multiple of this (the fused kernels' lane block).
ROW_QUANTUM = 128


@functools.lru_cache(maxsize=256)
def chunk_plan(rows: int, widths: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The ``(start, stop)`` row ranges a batch of ``rows`` rows of a network of ``widths``
    is split into: equal chunks of a multiple of 128 rows (the last one shorter), as few as
    :data:`TARGET_FLOPS` allows and never fewer rows than :data:`MIN_ROWS` or, for a large
    network, than its weights / 4096 (each chunk's gradient is a copy of the weights to add:
    a fortieth of the chunk's arithmetic at most).

    A pure function of its arguments: the thread count never enters it.
    """
    weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    target = max(MIN_ROWS, math.ceil(TARGET_FLOPS / (6 * weights)), weights // 4096)
    target = min(MAX_ROWS, target)
    count = max(1, math.ceil(rows / target))
    size = math.ceil(math.ceil(rows / count) / ROW_QUANTUM) * ROW_QUANTUM
    return tuple((lo, min(rows, lo + size)) for lo in range(0, rows, size))


class _InOrder:
    """Results folded into one in index order as they arrive, from any thread:
    ``fold(...fold(fold(None, r0), r1)..., r_last)``, whichever thread finished first.

    One thread folds at a time, outside the lock; the others only leave their result and go
    on with the next chunk, so the folding overlaps the chunks still running.
    """

    def __init__(self, fold: Callable[[Any, Any], Any]) -> None:
        self.fold = fold
        self.value: Any = None
        self._next = 0
        self._pending: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._folding = False

    def add(self, i: int, result: Any) -> None:
        with self._lock:
            self._pending[i] = result
            if self._folding:
                return
            self._folding = True
        while True:
            with self._lock:
                if self._next not in self._pending:
                    self._folding = False
                    return
                result = self._pending.pop(self._next)
                self._next += 1
            self.value = self.fold(self.value, result)


class _Job:
    """One call of :meth:`ChunkPool.run`: ``fn(i)`` for ``i < count``, by whichever thread
    takes ``i`` first; the first error cancels the chunks not yet taken."""

    def __init__(
        self, fn: Callable[[int], Any], count: int, sink: Callable[[int, Any], Any]
    ) -> None:
        self.fn = fn
        self.count = count
        self.sink = sink
        self._lock = threading.Lock()
        self._next = 0
        self._running = 0
        self._done = threading.Condition(self._lock)
        self.error: BaseException | None = None

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.count or self.error is not None:
                return None
            i = self._next
            self._next += 1
            self._running += 1
            return i

    def has_work(self) -> bool:
        return self._next < self.count and self.error is None

    def work(self) -> None:
        """Run chunks until none is left (or one failed)."""
        while (i := self._take()) is not None:
            try:
                self.sink(i, self.fn(i))
            except BaseException as exc:  # a KeyboardInterrupt too: stop handing out chunks
                with self._lock:
                    if self.error is None:
                        self.error = exc
                raise
            finally:
                with self._lock:
                    self._running -= 1
                    self._done.notify_all()

    def wait(self) -> None:
        """Wait until every chunk taken has finished (and none is left, unless cancelled)."""
        with self._lock:
            while self._running or (self._next < self.count and self.error is None):
                self._done.wait()


class ChunkPool:
    """Daemon worker threads that run the chunks of :class:`_Job` objects beside the caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: list[_Job] = []
        self._threads: list[threading.Thread] = []

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._wake.wait()
                job = self._jobs[0]
                if not job.has_work():
                    self._jobs.pop(0)
                    continue
            try:
                job.work()
            except BaseException:  # recorded in the job; the caller raises it
                pass

    def _start(self, workers: int) -> None:
        while len(self._threads) < workers:
            thread = threading.Thread(target=self._worker, name="mlp_accel-chunks", daemon=True)
            thread.start()
            self._threads.append(thread)

    def run(
        self, fn: Callable[[int], Any], count: int, threads: int, sink: Callable[[int, Any], Any]
    ) -> None:
        """``sink(i, fn(i))`` for every ``i < count``, on up to ``threads`` threads (the
        caller's included). An exception raised by any chunk (or a KeyboardInterrupt in the
        caller) is raised here once the chunks already running have finished."""
        if count <= 1 or threads <= 1:
            for i in range(count):
                sink(i, fn(i))
            return
        job = _Job(fn, count, sink)
        with self._lock:
            self._start(min(threads, count) - 1)
            self._jobs.append(job)
            self._wake.notify(min(threads, count) - 1)
        try:
            job.work()
        except BaseException:
            job.wait()
            raise
        job.wait()
        if job.error is not None:
            raise job.error


_pool = ChunkPool()


def _reset_after_fork() -> None:
    # A forked child has none of the parent's threads: it starts a pool of its own.
    global _pool
    _pool = ChunkPool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def run_chunks(
    fn: Callable[[int], Any],
    count: int,
    blas: bool = True,
    fold: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """``[fn(i) for i in range(count)]`` on the package's worker threads (as many as
    :func:`mlp_accel.threads` says, the caller included); with ``fold``, the results folded
    in index order instead (``fold(acc, result)``, ``acc`` None for the first), as they
    arrive (a single result is returned as it is). With ``blas`` (the chunks call BLAS),
    BLAS is held to one thread meanwhile, so that every matrix product of a chunk rounds the
    same way on every run."""
    threads = _threads.worker_count()
    scope = _threads.single_threaded_blas() if blas else contextlib.nullcontext()
    with scope:
        if count == 1:  # one result: nothing to fold
            return [fn(0)] if fold is None else fn(0)
        if fold is None:
            results: list[Any] = [None] * count
            _pool.run(fn, count, threads, results.__setitem__)
            return results
        ordered = _InOrder(fold)
        _pool.run(fn, count, threads, ordered.add)
        return ordered.value


def over_chunks(
    backend: Any,
    widths: tuple[int, ...],
    rows: int,
    fn: Callable[[int, int], Any],
    blas: bool = True,
    fold: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """``[fn(lo, hi), ...]`` over the fixed chunks of a batch of ``rows`` rows of a network
    of ``widths``, in chunk order, run on the worker threads (with ``fold``, folded in that
    order: see :func:`run_chunks`); one call ``fn(0, rows)`` on a backend that runs whole
    batches (a GPU), or for a batch of one chunk that calls no BLAS (``blas``)."""
    if backend.chunked:
        plan = chunk_plan(rows, widths)
        if len(plan) > 1:
            return run_chunks(lambda i: fn(*plan[i]), len(plan), blas, fold)
        if blas:
            with _threads.single_threaded_blas():
                result = fn(0, rows)
            return [result] if fold is None else result
    return [fn(0, rows)] if fold is None else fn(0, rows)


def add_parts(backend: Any) -> Callable[[Any, tuple[Any, list[Any]]], tuple[Any, list[Any]]]:
    """The fold that adds up ``(loss_sum, grads)`` parts of one batch, in the order given:
    the first part copied (a kernel may hand back reused buffers: the sum must own its
    arrays), each next one added into it."""

    def fold(acc: Any, part: tuple[Any, list[Any]]) -> tuple[Any, list[Any]]:
        loss, grads = part
        if acc is None:
            return backend.copy(loss), [backend.copy(g) for g in grads]
        total, sums = acc
        for s, g in zip(sums, grads):
            s += g
        return total + loss, sums

    return fold


def sum_loss_and_gradients(
    backend: Any, parts: Iterable[tuple[Any, list[Any]]]
) -> tuple[Any, list[Any]]:
    """Add up the ``(loss_sum, grads)`` of the micro-batches of one batch, in order.

    Each part must have been divided by the whole batch's ``denom``, so the sums are the big
    batch's (to float rounding) and the caller makes one update from them.
    """
    return functools.reduce(add_parts(backend), parts, None)
