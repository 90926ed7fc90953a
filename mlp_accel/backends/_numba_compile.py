"""Compiling the Numba kernels off the training thread.

A new network shape must not stall training while Numba compiles (seconds per kernel on a
busy machine). Kernels are grouped in *tasks*:

- ``layers``: the width-independent per-layer and optimizer kernels of one dtype
  (:mod:`._numba_kernels`), compiled once per dtype and machine, cached on disk;
- ``generic``: the whole-network kernels of narrow networks that take the widths and depth
  as data (:mod:`._numba_generic`), compiled once per dtype, set of activations and output
  (loss, activation), the same key as ``layers``, whatever the shape;
- ``fused``: the whole-network kernels generated for one narrow network spec
  (:mod:`._numba_fused`).

What a task is and which kernel calls compile it is :mod:`._numba_tasks`; this module runs
them. Each task comes in a serial and a parallel variant (the ``prange`` twins are compiled only
when a batch is big enough to use them). One background thread per process runs the tasks in
the order they were asked for. For a task not yet in Numba's disk cache the thread hands it to
a **child process** that compiles it (``cache=True`` writes the machine code to disk; one child
serves a run of queued tasks, :mod:`._numba_child`) and then loads the result from the cache
into this process, which takes milliseconds. A child, not
the thread itself, compiles because:

- a process that exits while a thread is inside LLVM aborts (measured: ``Assertion ... No
  Value?`` and exit status 134 when the interpreter finalized mid-compile); a process whose
  child compiles exits at once, and the child finishes writing the cache for the next
  run (Numba writes cache files atomically: a temporary file, then a rename);
- Numba's type inference and lowering are Python code that holds the GIL for seconds, which
  would slow the training thread as much as the compile itself.

Meanwhile the backend runs what is ready: NumPy for hooks whose kernels are not loaded, the
per-layer kernels for a network whose fused kernel is not loaded. A task that fails (the child
exits non-zero) is recorded; the backend warns once and keeps the slower path.

Nothing here imports Numba at module import: :func:`compiling` is cheap enough to ask every
epoch.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from ._numba_child import SERVE, ChildCompiler, TaskFailed, serve
from ._numba_tasks import (
    Task,
    cached,
    fused_task,
    generic_task,
    layer_items,
    layer_task,
    run_task,
    specialization_pays,
    task_key,
    tasks_for,
)

__all__ = [
    "TaskFailed",
    "compiling",
    "is_compiled",
    "compile_for_next_run",
    "want_for_next_run",
    "submit",
    "state",
    "error",
    "wait",
    "cache_location",
]


# -- the background thread ---------------------------------------------------------------
class _Compiler:
    """One daemon thread running tasks in order; the state of every task asked for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, Task]] = deque()
        self._state: dict[str, str] = {}  # key -> "queued" | "compiling" | "ready" | "failed"
        self._errors: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._in_process = False
        self._stopping = False
        self._child: ChildCompiler | None = None

    def submit(self, task: Task) -> str:
        key = task_key(task)
        with self._cond:
            if key in self._state or self._stopping:
                return key
            self._state[key] = "queued"
            self._queue.append((key, task))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mlp_accel-numba-compile", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return key

    def busy(self) -> bool:
        with self._cond:  # another thread may be adding a task to the dict
            return bool(self._queue) or "compiling" in self._state.values()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                key, task = self._queue.popleft()
                self._state[key] = "compiling"
                # Numba's work in this process (reading the cache index, loading machine
                # code) touches LLVM: shutdown() waits for it. It never waits for a child.
                self._in_process = True
            try:
                try:
                    on_disk = cached(task)
                finally:
                    with self._cond:
                        self._in_process = False
                        stopping = self._stopping
                if stopping:
                    return
                if not on_disk:
                    self._compile_in_child(task)
                with self._cond:
                    # Checked under the lock shutdown() takes: either shutdown() sees the
                    # flag and waits for the load, or the thread sees _stopping and leaves.
                    if self._stopping:
                        return
                    self._in_process = True
                try:
                    run_task(task)  # loads from the disk cache the child has just written
                finally:
                    self._in_process = False
                outcome, message = "ready", ""
            except Exception as exc:  # any failure leaves the slower path in place
                outcome, message = "failed", f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._state[key] = outcome
                if message:
                    self._errors[key] = message
                self._cond.notify_all()

    def _compile_in_child(self, task: Task) -> None:
        from . import _numba_fused

        env = _child_env(_numba_fused.cache_dir())
        child = self._child
        if child is None or child.env != env:
            if child is not None:
                child.close()
            command = [sys.executable, "-m", __name__, SERVE]
            child = self._child = ChildCompiler(command, env)
        try:
            child.run(task)
        except TaskFailed:
            if not child.alive():
                self._child = None
            raise
        finally:
            with self._cond:
                idle = not self._queue
            if idle and self._child is not None:
                self._child.close()  # nothing queued: it exits; a later task starts one
                self._child = None

    def shutdown(self) -> list[Task]:
        """Drop queued tasks; wait only for Numba's work inside this process to end.

        A compiling child is left to finish: it is a separate process (an exit leaves nothing
        half-done here), and the next run finds its kernels in the disk cache. Returns the
        tasks dropped from the queue (asked for, never started).
        """
        with self._cond:
            self._stopping = True
            dropped = [task for _, task in self._queue]
            self._queue.clear()
            in_process = self._in_process
            self._cond.notify_all()
        thread = self._thread
        if in_process and thread is not None and thread is not threading.current_thread():
            # An exit in the middle of a load, inside LLVM, would abort the process.
            thread.join()
        return dropped


_compiler = _Compiler()
#: Tasks this run found worth compiling for the next run (see :func:`want_for_next_run`).
_next_run: dict[str, Task] = {}
_next_run_lock = threading.Lock()


def want_for_next_run(task: Task) -> None:
    """Ask for ``task`` to be compiled for the next run if this run ends before it is.

    At exit, every such task not yet compiled or compiling here, and every task still queued,
    goes to one detached child process (:func:`_start_detached`): this run pays nothing for
    it, and the next run of the same shape starts on its kernels. This is what lets a job
    too short to pay for its fused kernel get it from its second run on.
    """
    with _next_run_lock:
        _next_run.setdefault(task_key(task), task)


def _exit() -> None:
    dropped = _compiler.shutdown()
    with _next_run_lock:
        wanted = [t for k, t in _next_run.items() if _compiler._state.get(k) in (None, "queued")]
    tasks = {task_key(t): t for t in [*wanted, *dropped]}
    if tasks and os.environ.get("MLP_ACCEL_NUMBA_COMPILE", "").strip().lower() != "sync":
        _start_detached(list(tasks.values()))


def _after_fork() -> None:
    # The thread does not exist in a forked child: start from nothing there.
    global _compiler
    _compiler = _Compiler()


atexit.register(_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def submit(task: Task) -> str:
    """Queue ``task`` for the background thread (once per process); returns its key."""
    return _compiler.submit(task)


def state(key: str) -> str | None:
    """``"queued"``, ``"compiling"``, ``"ready"``, ``"failed"``, or ``None`` if never asked."""
    return _compiler._state.get(key)


def error(key: str) -> str:
    """Why the task ``key`` failed ("" if it did not)."""
    return _compiler._errors.get(key, "")


def wait(keys: list[str], timeout: float | None = None) -> bool:
    """Block until every task in ``keys`` is ready or failed; False on timeout."""
    done = {"ready", "failed"}
    with _compiler._cond:
        return _compiler._cond.wait_for(
            lambda: all(_compiler._state.get(k) in done for k in keys), timeout
        )


def compiling() -> bool:
    """Whether a kernel is being compiled, or waits to be, in the background of this process."""
    return _compiler.busy()


#: Usable CPUs from which auto's compile for the next run starts during the run: with fewer,
#: the compile shares the run's core (or its hyperthread sibling). Measured on the 2-CPU VM:
#: the circles job (200,000 rows, 2-4-3-1, 150 epochs) on numpy took 1.20x as long beside it.
COMPILE_DURING_RUN_CPUS = 3


def compile_for_next_run(spec: Any) -> bool:
    """Have a detached child process compile the serial kernels of ``spec`` into the disk
    cache, for the next run.

    Used by ``backend="auto"`` when NumPy runs this job only because Numba's kernels are not
    compiled yet, and Numba would win it once they are: the next run finds them cached. This
    process imports nothing of Numba for it (an import in a second thread would race the
    training thread's), and the child outlives it. It starts at once with
    :data:`COMPILE_DURING_RUN_CPUS` usable CPUs or more, else at exit (:func:`want_for_next_run`):
    this run does not use the kernels, so on a small machine it should not share its cores
    with their compile. Nothing is compiled with ``MLP_ACCEL_NUMBA_COMPILE=sync``. Returns
    whether the compile was started or left to the exit.
    """
    from ._auto import NARROW_MAX_WIDTH
    from ._threads import usable_cpus

    if os.environ.get("MLP_ACCEL_NUMBA_COMPILE", "").strip().lower() == "sync":
        return False
    activations, outputs = layer_items(spec)
    tasks = [layer_task(spec.dtype, False, activations, outputs)]
    if max(spec.widths) <= NARROW_MAX_WIDTH:
        # First: every later new shape of this kind starts on it.
        tasks.insert(0, generic_task(spec))
        if specialization_pays(spec):
            tasks.append(fused_task(spec))
    if usable_cpus() >= COMPILE_DURING_RUN_CPUS:
        return _start_detached(tasks)
    for task in tasks:
        want_for_next_run(task)
    return True


def _start_detached(tasks: list[Task]) -> bool:
    """Start a child process, in a session of its own and at a lower priority, that compiles
    ``tasks`` into the disk cache and outlives this process. Returns whether it started."""
    kernels = sys.modules.get(f"{__package__}._numba_kernels")
    env = _child_env(None if kernels is None else kernels.cache_dir())
    env[_DETACHED] = "1"
    command = [sys.executable, "-m", __name__, *(json.dumps(t) for t in tasks)]
    try:
        subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:  # a cache warm-up must never disturb the run
        return False
    return True


#: Set in the environment of a detached child: it lowers its own priority.
_DETACHED = "MLP_ACCEL_COMPILE_DETACHED"


def _child_env(cache_dir: Path | None) -> dict[str, str]:
    """The environment of a compiling child: this package importable, and ``cache_dir`` for
    the generated modules, so that the child writes where this process reads, even where
    that is a fresh temporary directory (``None``: the child resolves the same rule itself).
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if cache_dir is not None:
        env["MLP_ACCEL_CACHE_DIR"] = str(cache_dir)
    return env


def is_compiled(spec: Any) -> bool:
    """Whether a model of ``spec`` would start on compiled numba code, with nothing to wait for.

    True when the serial kernels it runs (the per-layer kernels of its dtype and, for a narrow
    network, its generic or its specialized fused kernel) are loaded in this process or in
    Numba's disk cache. Imports Numba (about half a second the first time); returns False if
    Numba is not installed.

    Parameters
    ----------
    spec : NetworkSpec
        Widths, activations, loss and dtype of the network.
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False

    def ready(task: Task) -> bool:
        if state(task_key(task)) == "ready":
            return True
        try:
            return cached(task)
        except Exception:
            return False

    layers, *fused = tasks_for(spec, parallel=False)
    return ready(layers) and (not fused or any(ready(task) for task in fused))


def cache_location() -> str:
    """Where the compiled kernels are kept: Numba's cache of the per-layer kernels, and the
    directory of the generated network modules (with their Numba cache)."""
    from . import _numba_fused, _numba_kernels

    try:
        layers = str(_numba_kernels.adam_update._cache._cache_path)
    except AttributeError:  # Numba's private layout changed: name what decides it
        layers = os.environ.get("NUMBA_CACHE_DIR") or "Numba's default cache"
    return f"{layers} (per-layer kernels), {_numba_fused.cache_dir()} (network kernels)"


def _child_main(argv: list[str]) -> int:
    """Entry point of a compiling child: ``python -m ...._numba_compile '<task json>' ...``.

    Runs every task given, in order; exits non-zero if any failed (after trying the rest).
    """
    if os.environ.get(_DETACHED) and hasattr(os, "nice"):
        try:
            os.nice(10)  # compiling for a later run: yield the CPU to whatever runs now
        except OSError:
            pass
    if argv == [SERVE]:
        return serve(_run_locked)
    status = 0
    for arg in argv:
        try:
            _run_locked(json.loads(arg))
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
    return status


def _run_locked(task: Task) -> None:
    try:
        import fcntl
    except ImportError:  # no advisory locks here: compile, at worst twice
        run_task(task)
        return
    from . import _numba_fused

    # One compile per task at a time across processes (a second run started while the first
    # one's child still compiles, parallel test processes): the second child waits for the
    # first, then finds the kernels in the disk cache. The lock dies with its process.
    digest = hashlib.sha1(task_key(task).encode()).hexdigest()[:20]
    with open(_numba_fused.cache_dir() / f"compile-{digest}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run_task(task)


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
