"""The lines a bench run ends with: which backend for the user's network, and ``--threads 1``.

Both read only the report's rows and header, so a saved JSON report gives the same advice.
"""

from __future__ import annotations

from typing import Any

from .cases import Shape
from .timing import ranges_overlap

__all__ = ["backend_advice", "threads_advice", "BUSY_LOAD_PER_CPU"]

#: Load average per usable CPU from which the machine counts as busy: other processes then
#: hold about half the cores, and busy-waiting thread pools stall behind them.
BUSY_LOAD_PER_CPU = 0.5


def _rate(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _dtype_choice(rows: list[dict[str, Any]]) -> str:
    """The fastest backend of one dtype's rows, and whether the runner-up is measured apart."""
    ranked = sorted(rows, key=lambda r: r["train_samples_per_sec"], reverse=True)
    best = ranked[0]
    text = f"{best['impl']} ({_rate(best['train_samples_per_sec'])} train samples/s"
    if len(ranked) == 1:
        return f"{text}, the only backend measured)"
    second = ranked[1]
    ratio = best["train_samples_per_sec"] / second["train_samples_per_sec"]
    if ranges_overlap(
        best.get("train_samples_per_sec_range"), second.get("train_samples_per_sec_range")
    ):
        return f"{text}; {second['impl']} is as fast within the spread: either)"
    return f"{text}, {ratio:.2f}x {second['impl']})"


def backend_advice(rows: list[dict[str, Any]], shape: Shape) -> str:
    """One line: the backend to train ``shape`` with, per dtype, from the measured rows.

    The choice is the highest training-step rate among the library's backends; where the
    runner-up's range of rounds overlaps the winner's, the line says either will do.
    """
    mine = [r for r in rows if r["shape"] == shape.name and r["kind"] == "backend"]
    prefix = f"which backend for {shape.family} at batch {shape.batch}:"
    if not mine:
        return f"{prefix} none measured (see skipped)"
    dtypes = list(dict.fromkeys(r["dtype"] for r in mine))
    choices = [
        f"{dtype} -> {_dtype_choice([r for r in mine if r['dtype'] == dtype])}" for dtype in dtypes
    ]
    return f"{prefix} {'; '.join(choices)}"


def threads_advice(header: dict[str, Any], threads: int | None) -> list[str]:
    """A line recommending ``--threads 1`` when the run was not thread-limited.

    Stronger when the load average before the run shows other processes on the machine:
    with as many busy-waiting BLAS and OpenMP threads as cores, any other process stalls
    every matrix product, and the figures measure the neighbours.
    """
    if threads is not None:
        return []
    load = (header.get("load_average_before") or header.get("load_average") or [None])[0]
    cpus = header.get("usable_cpus") or 1
    if load is not None and load >= BUSY_LOAD_PER_CPU * cpus:
        return [
            f"busy machine (load average {load} on {cpus} usable CPUs): rerun with "
            "--threads 1, whose figures other processes disturb far less"
        ]
    return [
        "threads not limited: on a busy or shared machine run with --threads 1, whose "
        "figures other processes disturb far less"
    ]
