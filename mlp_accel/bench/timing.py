"""Timing side by side on a noisy machine: interleaved rounds, the median and its spread."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SPREAD", "Timing", "time_interleaved_stats", "time_interleaved", "ranges_overlap"]

#: How the bench states a row's noise: the range of its per-round times.
SPREAD = "min-max over rounds"


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one callable over the rounds of :func:`time_interleaved_stats`.

    ``median`` is what the table reports; ``low`` and ``high`` are the fastest and slowest
    round (:data:`SPREAD`: min-max, since with the 3 to 10 rounds a bench can afford an
    interquartile range is barely defined); ``rounds`` is how many rounds were timed.
    """

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        """The timing of a list of per-round seconds."""
        if not samples:
            raise ValueError("no timing samples")
        return cls(
            float(np.median(samples)), float(min(samples)), float(max(samples)), len(samples)
        )

    def rate(self, samples: float) -> tuple[float, float, float]:
        """``samples`` per second: (median, slowest round, fastest round)."""
        return samples / self.median, samples / self.high, samples / self.low


def time_interleaved_stats(
    calls: dict[Any, Callable[[], Any]],
    *,
    min_rounds: int = 3,
    min_time: float = 0.5,
    max_rounds: int = 1000,
    block_time: float = 0.02,
    syncs: dict[Any, Callable[[], Any]] | None = None,
) -> dict[Any, Timing]:
    """Seconds per call of each callable, timed in interleaved blocks: median and spread.

    On a shared, noisy machine, measuring the implementations being compared side by side in
    the same rounds exposes them to the same interference, and the median discards the
    rounds a neighbour spoiled; the min-max range of the rounds says how much they spoiled.
    Each round runs one block per callable: a call faster than ``block_time`` is repeated
    within its block (timer overhead stays negligible) and the block's mean is the round's
    sample, and a fast block starts with one untimed call, because after a switch of library
    the previous library's idle worker threads (OpenMP, OpenBLAS) still spin for a moment
    and would otherwise be billed to the next one. The caller warms up JIT code before.

    ``syncs`` maps a key to the synchronization of a callable that does not wait for its
    device itself (``train_call(..., synchronize=False)``): it is called before the clock
    starts and before it stops, so a block is ``k`` launched calls between two
    synchronizations and the device's work is timed. Keys not in ``syncs`` are timed as is.
    """
    syncs = syncs or {}
    repeats: dict[Any, int] = {}
    for key, fn in calls.items():
        sync = syncs.get(key, _nothing)
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
        repeats[key] = max(1, min(10_000, round(block_time / max(first, 1e-7))))
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    start = time.perf_counter()
    rounds = 0
    while True:
        for key, fn in calls.items():
            k, sync = repeats[key], syncs.get(key, _nothing)
            if k > 1:
                fn()
            sync()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync()
            samples[key].append((time.perf_counter() - t0) / k)
        rounds += 1
        elapsed = time.perf_counter() - start
        if rounds >= min_rounds and (elapsed >= min_time or rounds >= max_rounds):
            break
    return {key: Timing.of(s) for key, s in samples.items()}


def _nothing() -> None:
    """The synchronization of a callable that synchronizes itself."""


def time_interleaved(calls: dict[Any, Callable[[], Any]], **options: Any) -> dict[Any, float]:
    """Median seconds per call of each callable (:func:`time_interleaved_stats` without
    the spread).

    ``options`` are :func:`time_interleaved_stats`'s keywords (``min_rounds``, ``min_time``,
    ``max_rounds``, ``block_time``, ``syncs``), passed on as they are, so that their defaults
    are stated once.
    """
    stats = time_interleaved_stats(calls, **options)
    return {key: t.median for key, t in stats.items()}


def ranges_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two ``[low, high]`` ranges overlap; a missing range is no evidence of noise."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]
