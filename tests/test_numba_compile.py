"""Compilation off the training thread: the swap, the fallbacks, the exit, the progress bar,
and ``mlp-accel warmup``.

The specialized kernels here reuse shapes the other numba tests compile, so that an empty
cache pays for each of them once per session.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.backends import _numba_compile as C

from .helpers import make_data

numba = pytest.importorskip("numba")

from mlp_accel.backends import _layer_loop as layer_loop  # noqa: E402
from mlp_accel.backends import _numba_fused  # noqa: E402
from mlp_accel.backends._numba_networks import StagedNetwork  # noqa: E402
from mlp_accel.backends.base import NetworkSpec  # noqa: E402
from mlp_accel.backends.numba_backend import NumbaBackend  # noqa: E402

#: test_numba_backend.py's warmup shape: compiled once per session for both files.
WIDTHS, ACTS, LOSS = [2, 3, 1], ["tanh", "sigmoid"], "binary_cross_entropy"
SPEC = NetworkSpec(tuple(WIDTHS), tuple(ACTS), LOSS, "float64")


def precompile_tasks() -> list[dict]:
    """The kernels ``mlp-accel warmup`` compiles for SPEC (see conftest.py)."""
    from mlp_accel.backends import _numba_tasks

    return _numba_tasks.tasks_for(SPEC)


def _background(specialize_after: float | None = 0.0) -> NumbaBackend:
    backend = NumbaBackend()
    backend.background = True  # the default mode
    backend.specialize_after = specialize_after
    return backend


def _close(actual, desired, rtol=1e-7):
    scale = max(1.0, float(np.max(np.abs(desired))))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * 1e-3 * scale)


@pytest.fixture
def private_compiler(monkeypatch):
    """A compiler of this test's own (its tasks and failures stay here)."""
    compiler = C._Compiler()
    monkeypatch.setattr(C, "_compiler", compiler)
    yield compiler
    compiler.shutdown()


def test_background_compile_swaps_in_and_gives_the_same_gradients(rng):
    backend = _background()
    model = ma.MLP(WIDTHS, ACTS, LOSS, backend=backend, dtype="float64", seed=3)
    ref = ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", dtype="float64", seed=3)
    network = model._fused_network()
    assert isinstance(network, StagedNetwork)
    X, y = make_data(rng, 37, WIDTHS, LOSS)
    Xd, yd = model.prepare(X, y)
    # the path that runs before the swap: per-layer hooks (NumPy's until their kernels load)
    layer_loss, layer_grads = layer_loop.loss_and_gradients(
        backend, model.params, network._acts, network._loss, Xd, yd, 37.0
    )
    model.gradients(X, y)  # a step on the staged network asks for the fused kernel
    key = C.task_key(C.fused_task(SPEC))
    assert C.state(key) is not None
    assert C.wait([key], timeout=600) and C.state(key) == "ready", C.error(key)
    loss_val, grads = model.gradients(X, y)
    assert network._fused is not None  # swapped in between two steps
    loss_ref, grads_ref = ref.gradients(X, y)
    assert loss_val == pytest.approx(loss_ref, rel=1e-7)
    assert float(layer_loss) / 37 == pytest.approx(loss_ref, rel=1e-7)
    for g, g_layer, g_ref in zip(grads, layer_grads, grads_ref, strict=True):
        _close(g, g_ref)
        _close(g_layer, g_ref)
    _close(model.predict_proba(X), ref.predict_proba(X))
    # training goes on across the swap and lands where NumPy's float64 does
    twin = ma.MLP(WIDTHS, ACTS, LOSS, backend=_background(), dtype="float64", seed=3)
    for m in (twin, ref):
        ma.fit(m, X, y, epochs=3, batch_size=8, optimizer=ma.optim.Adam(0.01))
    for w, w_ref in zip(twin.get_weights(), ref.get_weights(), strict=True):
        _close(w, w_ref)


def test_a_short_job_never_compiles_a_fused_kernel(rng, tmp_path, monkeypatch):
    monkeypatch.setenv("MLP_ACCEL_CACHE_DIR", str(tmp_path))  # nothing of it on disk
    widths, acts = [5, 7, 2], ["sigmoid", "sigmoid"]
    spec = NetworkSpec(tuple(widths), tuple(acts), LOSS, "float64")
    model = ma.MLP(widths, acts, LOSS, backend=_background(1e9), dtype="float64", seed=0)
    X, y = make_data(rng, 20, widths, LOSS)
    ma.fit(model, X, y, epochs=2, batch_size=5)
    assert C.state(C.task_key(C.fused_task(spec))) is None
    assert not C.is_compiled(spec)


def test_a_failing_compile_falls_back_with_a_warning(rng, private_compiler, monkeypatch):
    def fail(task):
        raise C.TaskFailed("no compiler here")

    monkeypatch.setattr(private_compiler, "_compile_in_child", fail)
    monkeypatch.setattr(C, "cached", lambda task: False)
    widths, acts, loss = [3, 4, 2], ["relu", "softmax"], "cross_entropy"
    backend = _background()
    model = ma.MLP(widths, acts, loss, backend=backend, dtype="float64", seed=1)
    ref = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=1)
    X, y = make_data(rng, 30, widths, loss)
    with warnings.catch_warnings(record=True) as caught:
        # The first call asks for the per-layer and the fused kernels; a failure that
        # arrives while it still runs is reported at once, else by the next call.
        warnings.simplefilter("always")
        model.gradients(X, y)
        spec = model.spec
        layers = C.layer_task("float64", False, *C.layer_items(spec))
        generic = C.generic_task(spec)
        keys = [C.task_key(layers), C.task_key(C.fused_task(spec)), C.task_key(generic)]
        assert C.wait(keys, timeout=60)
        assert all(C.state(k) == "failed" for k in keys)
        assert "no compiler here" in C.error(keys[1])
        loss_val, grads = model.gradients(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 3, messages  # specialized, generic and per-layer, once each
    assert sum(m.startswith("the generic fused numba kernel") for m in messages) == 1
    assert all("did not compile" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not every step
        model.gradients(X, y)
    loss_ref, grads_ref = ref.gradients(X, y)
    assert loss_val == pytest.approx(loss_ref, rel=1e-12)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        _close(g, g_ref, 1e-12)


def test_a_failing_child_is_reported_with_its_error(private_compiler, monkeypatch):
    monkeypatch.setattr(C, "cached", lambda task: False)  # so that a child process runs
    key = C.submit({"kind": "no such kind", "dtype": "float64", "parallel": False})
    assert C.wait([key], timeout=120)
    assert C.state(key) == "failed"
    # the child's own reason, sent back as its answer (the child lives on for the next task)
    assert "TaskFailed" in C.error(key) and "unknown compile task kind" in C.error(key)
    assert not C.compiling()


def test_exit_while_compiling_is_clean(tmp_path):
    code = (
        "import time\n"
        "from mlp_accel.backends import _numba_compile as C\n"
        "from mlp_accel.backends.base import NetworkSpec\n"
        "spec = NetworkSpec((3, 2, 2), ('relu', 'softmax'), 'cross_entropy', 'float32')\n"
        "C.submit(C.fused_task(spec))\n"
        "time.sleep(0.5)\n"
        "assert C.compiling()\n"
    )
    env = {**os.environ, "MLP_ACCEL_CACHE_DIR": str(tmp_path / "kernels")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_sync_mode_and_a_bad_mode(monkeypatch):
    monkeypatch.setenv("MLP_ACCEL_NUMBA_COMPILE", "sync")
    assert not NumbaBackend().background
    monkeypatch.setenv("MLP_ACCEL_NUMBA_COMPILE", "later")
    with pytest.raises(ValueError, match="MLP_ACCEL_NUMBA_COMPILE"):
        NumbaBackend()


def test_progress_bar_says_compiling_and_forgets_that_rate(monkeypatch, capsys, rng):
    from tqdm import tqdm

    from mlp_accel.training.hooks import ProgressBar

    answers = iter([True, True, False])
    monkeypatch.setattr(C, "compiling", lambda: next(answers, False))
    X, y = make_data(rng, 16, WIDTHS, LOSS)
    model = ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", seed=0)
    slow = [lambda epoch, logs: time.sleep(0.15)]  # epochs long enough for tqdm to redraw
    ma.fit(model, X, y, epochs=4, progress=True, callbacks=slow)
    assert "compiling kernels" in capsys.readouterr().err

    progress = ProgressBar(1, 10)
    progress.bar.close()
    bar = progress.bar = tqdm(total=10, file=io.StringIO(), mininterval=0)
    bar._ema_dn(1)
    bar._ema_dt(5.0)  # an epoch slowed by compilation
    logs = {"loss": 0.5, "samples_per_sec": 100.0}
    monkeypatch.setattr(C, "compiling", lambda: True)
    progress.on_epoch_end(1, logs, False)
    assert progress.compiling
    assert "compiling kernels" in str(bar.postfix) and bar._ema_dt() > 0
    monkeypatch.setattr(C, "compiling", lambda: False)
    progress.on_epoch_end(2, logs, False)
    assert not progress.compiling
    assert "compiling" not in str(bar.postfix) and bar._ema_dt() == 0  # rate forgotten
    progress.close()


def test_warmup_command_compiles_and_says_where(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mlp_accel", "warmup", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )

    # This module's precompile_tasks compile the command's kernels in the background: wait
    # for them, so that the command only loads. Numba rewrites a module's cache index whole:
    # two processes saving kernels of one module at once can drop each other's entries.
    assert C.wait([C.submit(task) for task in precompile_tasks()], timeout=600)
    done = cli("--layers", "2,3,1", "--activations", "tanh,sigmoid", "--dtype", "float64")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # compiled here, or (as a rule) in the background of this session: the cache is shared
    assert re.search(r"(compiled|cached  ) fused network kernels \(serial, float64\)", out)
    assert re.search(r"(compiled|cached  ) generic network kernels \(parallel, float64\)", out)
    assert re.search(r"(compiled|cached  ) per-layer kernels \(parallel, float64\)", out)
    assert "cache:" in out and str(_numba_fused.cache_dir()) in out
    assert C.is_compiled(SPEC)
    path = tmp_path / "m.npz"
    ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", dtype="float64").save(path)
    done = cli("--model", str(path))  # everything cached now: a load
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("cached  ") == 6 and "compiled" not in done.stdout
    assert "fused kernels for 2,3,1 tanh,sigmoid binary_cross_entropy" in done.stdout
    done = cli("--layers", "2,3,1", "--activations", "tanh")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_exit_leaves_wanted_and_queued_tasks_to_a_detached_child(private_compiler, monkeypatch):
    started = []
    monkeypatch.setattr(C, "_next_run", {})
    monkeypatch.setattr(C, "_start_detached", lambda tasks: started.append(tasks) or True)
    monkeypatch.delenv("MLP_ACCEL_NUMBA_COMPILE", raising=False)
    wanted = C.fused_task(NetworkSpec((4, 3, 2), ("relu", "softmax"), "cross_entropy", "float32"))
    done = C.fused_task(SPEC)
    private_compiler._state[C.task_key(done)] = "ready"
    C.want_for_next_run(wanted)
    C.want_for_next_run(done)  # compiled in this run already: nothing left to do
    C._exit()
    assert started == [[wanted]]
    started.clear()
    monkeypatch.setenv("MLP_ACCEL_NUMBA_COMPILE", "sync")  # no background work at all
    C._exit()
    assert started == []


def test_a_run_too_short_for_its_fused_kernel_leaves_it_to_the_next(tmp_path):
    from mlp_accel.backends import _auto

    spec = NetworkSpec((3, 5, 2), ("relu", "softmax"), "cross_entropy", "float32")
    code = (
        "import numpy as np, mlp_accel as ma\n"
        "from mlp_accel.backends import _numba_networks as nb\n"
        "nb.NEXT_RUN_AFTER = 0.0\n"
        "backend = ma.get_backend('numba')\n"
        "backend.specialize_after = 1e9\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((40, 3)).astype('float32')\n"
        "model = ma.MLP([3, 5, 2], ['relu', 'softmax'], 'cross_entropy', backend=backend,\n"
        "               dtype='float32', seed=0)\n"
        "ma.fit(model, X, rng.integers(0, 2, 40), epochs=2, batch_size=20)\n"
        "from mlp_accel.backends import _numba_compile as C\n"
        "assert C.state(C.task_key(C.fused_task(model.spec))) is None\n"
    )
    env = {**os.environ, "MLP_ACCEL_CACHE_DIR": str(tmp_path / "kernels")}
    env.pop("MLP_ACCEL_NUMBA_COMPILE", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 240
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLP_ACCEL_CACHE_DIR", str(tmp_path / "kernels"))
        while not _auto._fused_on_disk(spec) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _auto._fused_on_disk(spec), "the detached child did not compile the fused kernel"


def test_one_child_compiles_a_run_of_tasks_and_answers_each(tmp_path):
    from mlp_accel.backends._numba_child import ChildCompiler, TaskFailed

    script = (
        "import os, sys\n"
        "from mlp_accel.backends._numba_child import serve\n"
        "def run(task):\n"
        "    print('stray output')\n"  # must not be taken for an answer
        "    if task['what'] == 'die':\n"
        "        sys.stderr.write('dying\\n'); sys.stderr.flush(); os._exit(3)\n"
        "    if task['what'] == 'fail':\n"
        "        raise ValueError('no such kernel')\n"
        f"    open({str(tmp_path / 'pids')!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "raise SystemExit(serve(run))\n"
    )
    child = ChildCompiler([sys.executable, "-c", script], dict(os.environ))
    child.run({"kind": "layers", "what": "ok"})
    with pytest.raises(TaskFailed, match="ValueError: no such kernel"):
        child.run({"kind": "layers", "what": "fail"})
    child.run({"kind": "fused", "what": "ok"})
    assert child.alive()
    assert len(set((tmp_path / "pids").read_text().split())) == 1  # one process for all
    with pytest.raises(TaskFailed, match=r"exit status 3\): .*dying"):
        child.run({"kind": "generic", "what": "die"})
    assert not child.alive()
    child.close()
    other = ChildCompiler([sys.executable, "-c", script], dict(os.environ))
    other.close()  # the end of its input: it exits
    assert other._proc.wait(timeout=30) == 0
