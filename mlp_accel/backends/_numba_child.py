"""The child process that compiles Numba kernels for :mod:`._numba_compile`.

One child compiles a run of queued tasks, sent one JSON line each on its input and answered
each with a line (``ok``, or ``failed: <reason>``): one Python and Numba start-up (1-2 s of
CPU, measured here) for the run instead of one per task, and Numba's helper functions compiled
once for all of its tasks. It exits at the end of its input, so a child left running when its
parent exits finishes its task (the cache is written) and ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["SERVE", "ChildCompiler", "TaskFailed", "serve"]

#: The argument that makes the compiling module's entry point run :func:`serve`.
SERVE = "--serve"


class TaskFailed(RuntimeError):
    """A compile task failed; the message carries the end of the child's error output."""


class ChildCompiler:
    """The parent's end of one compiling child, started with ``command`` and ``env``."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.env = env
        # Errors go to a file, not a pipe: a child left running at exit must not die of a
        # closed pipe before it has written the cache.
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, task: dict[str, Any]) -> None:
        """Compile ``task`` in the child; raises :class:`TaskFailed` with the child's reason."""
        try:
            self._proc.stdin.write(json.dumps(task) + "\n")  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]
            answer = self._proc.stdout.readline().strip()  # type: ignore[union-attr]
        except OSError:  # a broken pipe: the child died
            answer = ""
        if answer == "ok":
            return
        if answer.startswith("failed: "):
            raise TaskFailed(f"compiling {task['kind']} kernels failed: {answer[8:]}")
        status = self._proc.wait()
        self._err.seek(0)
        tail = self._err.read().decode(errors="replace").strip().splitlines()[-3:]
        raise TaskFailed(
            f"compiling {task['kind']} kernels failed (exit status {status}): " + " | ".join(tail)
        )

    def close(self) -> None:
        """End the child's input: it exits once its task (if any) is done."""
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        self._err.close()


def serve(run: Callable[[dict[str, Any]], None]) -> int:
    """The child's loop: ``run`` a task per input line, write an answer per task."""
    # Anything else written to stdout (by Numba, by a C library) goes to stderr: stdout
    # carries the answers only.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            run(json.loads(line))
            answer = "ok"
        except Exception as exc:
            answer = "failed: " + f"{type(exc).__name__}: {exc}".replace("\n", " ")
        try:
            answers.write(answer + "\n")
            answers.flush()
        except OSError:  # the parent is gone: the task is in the cache all the same
            return 0
    return 0
