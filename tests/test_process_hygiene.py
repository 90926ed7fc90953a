"""The user's process as it was: no child process, no environment write, an interrupt that
returns, and compiled kernels in the user's cache, readable by others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

FIT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import mlp_accel as ma
    before = dict(os.environ)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 3)).astype(np.float32)
    y = (X[:, 0] > X[:, 1]).astype(np.float32)
    model = ma.MLP([3, 16, 1], backend=("numba", {"tier": "generic"}), seed=0)
    ma.fit(model, X, y, epochs=int(sys.argv[1]), batch_size=256)
    children = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            children += fh.read().split()
    print("children", len(children))
    print("environ unchanged", dict(os.environ) == before)
    """
)


def _run(code: str, *args: str, tmp_path: Path, **kwargs):
    env = {**os.environ, "MLP_ACCEL_CACHE_DIR": str(tmp_path / "kernels")}
    # A variable a library's import sets (threadpoolctl's, once this process imported
    # scikit-learn) is left out, so the child shows whether a fit sets it.
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        **kwargs,
    )


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_numba_fit_starts_no_process_and_writes_no_environment(tmp_path):
    pytest.importorskip("numba")
    proc = _run(FIT, "2", tmp_path=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "children 0" in out and "environ unchanged True" in out
    # the generated kernels are readable by others, as the umask lets files be
    for path in (tmp_path / "kernels").glob("*.py"):
        assert path.stat().st_mode & 0o044 == 0o044 & ~_umask(), path


def _sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_interrupted_fit_returns_and_leaves_nothing_running(tmp_path):
    """SIGINT during a fit on the worker threads: a KeyboardInterrupt in the caller, the
    process ends, and no process it started outlives it (it starts none)."""
    pytest.importorskip("numba")
    warm = _run(FIT, "1", tmp_path=tmp_path)  # compile first: interrupt the training itself
    assert warm.wait(timeout=600) == 0, warm.stderr.read()
    # Epochs enough that the fit is still running when the signal comes, on any machine.
    # SIGINT at its default in the child (Python then raises KeyboardInterrupt), whatever this
    # process inherited: a job started in the background of a shell ignores it.
    proc = _run(FIT, "10000000", tmp_path=tmp_path, start_new_session=True, preexec_fn=_sigint)
    try:
        time.sleep(8)  # imports and the first epochs
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed test leaves no training process behind
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    # nothing of its session is left (the package starts no process of its own)
    left = subprocess.run(
        ["ps", "-o", "pid=", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert left == []


def test_an_unwritable_cache_compiles_in_one_temporary_folder_removed_at_exit(tmp_path):
    """A cache path that cannot be made (here: under a file) gives a warning naming the
    setting, kernels compiled for this process only, and nothing left behind at exit."""
    pytest.importorskip("numba")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = textwrap.dedent(
        """
        import warnings
        from mlp_accel.backends.numba import kernels
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = kernels.cache_dir()
        assert kernels.cache_dir() == first  # one folder for the process
        kernels.layer_module("relu", "float32")  # generated and imported from there
        print(first)
        print(any("MLP_ACCEL_CACHE_DIR" in str(w.message) for w in caught))
        """
    )
    env = {**os.environ, "MLP_ACCEL_CACHE_DIR": str(blocker / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    folder, warned = out.stdout.split()
    assert warned == "True"
    assert not Path(folder).exists()
