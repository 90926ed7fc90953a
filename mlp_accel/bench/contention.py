"""A contended machine on purpose: one busy process on one core while the bench runs.

Thread pools that look fine on a quiet machine can collapse when any other process wants a
core (spinning OpenMP and OpenBLAS workers wait for a thread that is not running). The
``--contended`` scenario reproduces the everyday case, one other busy program, so the table
shows what a user on a shared machine sees.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["BUSY_LOOP", "busy_process"]

#: The busy program: pure-Python arithmetic, no I/O. It exits by itself when its parent is
#: gone (re-parented), so even a bench killed with SIGKILL leaves no spinning orphan.
BUSY_LOOP = (
    "import os\n"
    "parent = os.getppid()\n"
    "x = 0\n"
    "while os.getppid() == parent:\n"
    "    for i in range(200000):\n"
    "        x = (x + i) & 0xFFFF\n"
)


def _usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@contextlib.contextmanager
def busy_process(cpu: int | None = None) -> Iterator[dict[str, Any]]:
    """Run a process that keeps one core busy for the duration of the ``with`` block.

    The process is pinned to ``cpu`` (default: the last CPU this process may use) where the
    platform allows it (Linux ``sched_setaffinity``); elsewhere it just spins wherever the
    scheduler puts it. It is stopped on leaving the block however the block ends: normally,
    on an exception or on Ctrl-C (terminated, then killed if it does not exit).

    Yields
    ------
    dict
        What the report's header records: ``pid``, ``cpu`` (None when not pinned),
        ``pinned``, ``started`` (wall time) and, after the block, ``cpu_seconds`` (the busy
        process's CPU time, proof that it ran) and ``seconds`` (its lifetime).

    Raises
    ------
    ValueError
        ``cpu`` is not one this process may use.
    """
    cpus = _usable_cpus()
    if cpu is not None and cpu not in cpus:
        raise ValueError(f"cpu {cpu} is not usable here; usable CPUs: {cpus}")
    target = cpus[-1] if cpu is None else cpu
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_LOOP],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    info: dict[str, Any] = {"pid": proc.pid, "cpu": None, "pinned": False}
    start = time.perf_counter()
    try:
        if hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(proc.pid, {target})
                info.update(cpu=target, pinned=True)
            except OSError:
                pass  # not allowed here: it still keeps a core busy, unpinned
        yield info
    finally:
        info["cpu_seconds"] = _cpu_seconds(proc.pid)
        info["seconds"] = round(time.perf_counter() - start, 2)
        info["running_at_end"] = proc.poll() is None
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live child (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return round(ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None
