"""backend="auto": the cost model (a pure function of the job), the compiled-kernel check,
and the model that records its choice and moves at its first fit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.backends import NetworkSpec
from mlp_accel.backends._auto import (
    NARROW_MAX_WIDTH,
    NUMBA_IMPORT_S,
    Job,
    choose_backend,
    estimate_seconds,
    numba_kernels_cached,
)

CPU = ("numpy", "numba")
GPU = ("cupy", "numpy", "numba")
DIGITS = Job((64, 48, 10), "float32", rows=1347, epochs=40)
WINE = Job((13, 32, 3), "float32", rows=133, epochs=300)
CIRCLES_BIG = Job((2, 4, 3, 1), "float32", rows=200_000, epochs=150)
TUTORIAL = Job((2, 4, 3, 1), "float32", rows=750, epochs=300)
STREAMING = Job((2, 4, 3, 1), "float32", rows=10_000_000, epochs=20, batch_size=1024)
MNIST = Job((784, 1024, 1024, 10), "float32", rows=60_000, epochs=10, batch_size=256)
MNIST_TINY = Job((784, 1024, 1024, 10), "float32", rows=512, epochs=2)

# (job, available, fused kernel cached, generic kernels cached, expected backend)
TABLE = [
    (DIGITS, CPU, False, False, "numpy"),  # compiling can never pay back
    (DIGITS, CPU, True, True, "numpy"),  # warm, the job is still too small
    (WINE, CPU, False, True, "numpy"),
    (TUTORIAL, CPU, True, True, "numpy"),  # 0.2 M samples: loading numba costs more
    (CIRCLES_BIG, CPU, True, True, "numba"),  # cached kernels: numba pays back at once
    (CIRCLES_BIG, CPU, False, False, "numpy"),  # seconds of compilation: not on this job
    (STREAMING, CPU, False, False, "numba"),  # long enough to pay for compiling
    (MNIST, CPU, True, True, "numpy"),  # GEMM-bound: both run BLAS, within the margin
    (MNIST_TINY, CPU, True, True, "numpy"),  # within the margin: the safer numpy
    (MNIST, GPU, True, True, "cupy"),
    (TUTORIAL, GPU, True, True, "numpy"),  # the GPU's start-up dwarfs the job
    (CIRCLES_BIG, ("numba",), False, False, "numba"),  # the only one there
]


@pytest.mark.parametrize("job, available, fused, generic, expected", TABLE)
def test_auto_rule(job, available, fused, generic, expected):
    choice = choose_backend(job, available, numba_fused_cached=fused, numba_generic_cached=generic)
    assert choice.name == expected, choice.reason
    assert set(choice.estimates) == set(available)
    assert "estimated" in choice.reason and f"{job.epochs} epochs" in choice.reason


def test_auto_without_a_job_is_numpy():
    choice = choose_backend(None, CPU)
    assert choice.name == "numpy" and "no job" in choice.reason


def test_estimates_grow_with_the_job_and_compiling_costs():
    small = estimate_seconds("numba", TUTORIAL)
    assert estimate_seconds("numba", CIRCLES_BIG) > small
    # A cold start never stalls: it costs NumPy-speed steps while the kernels compile in the
    # background, so it lies between numba warm and numpy plus numba's start-up.
    for job in (TUTORIAL, CIRCLES_BIG, MNIST):
        warm = estimate_seconds("numba", job)
        for fused, generic in ((False, True), (True, False), (False, False)):
            cold = estimate_seconds(
                "numba", job, numba_fused_cached=fused, numba_generic_cached=generic
            )
            assert warm <= cold <= estimate_seconds("numpy", job) + NUMBA_IMPORT_S + 1e-9
    long_job = Job(CIRCLES_BIG.widths, "float32", CIRCLES_BIG.rows, 5_000)
    cold = estimate_seconds("numba", long_job, numba_fused_cached=False)
    assert cold < estimate_seconds("numpy", long_job) / 2  # a long job pays back its compile
    assert estimate_seconds("numpy", TUTORIAL) < estimate_seconds("numpy", CIRCLES_BIG)
    f64 = Job(MNIST.widths, "float64", MNIST.rows, MNIST.epochs, MNIST.batch_size)
    assert estimate_seconds("numpy", f64) > estimate_seconds("numpy", MNIST)


def test_unknown_backend_has_no_cost_model():
    with pytest.raises(ValueError, match="no cost model for backend 'tpu'"):
        estimate_seconds("tpu", TUTORIAL)
    with pytest.raises(ValueError, match="no backend with a cost model"):
        choose_backend(TUTORIAL, ["tpu"])


def test_job_steps_and_unknown_rows():
    assert Job((2, 1), rows=1000, epochs=3, batch_size=300).steps == 12
    assert Job((2, 1), rows=1000, epochs=3).steps == 3
    assert Job((2, 1), rows=None, epochs=2, batch_size=1000).steps == 2000


def test_narrow_limit_mirrors_the_fused_kernel():
    pytest.importorskip("numba")
    from mlp_accel.backends import _numba_fused

    assert NARROW_MAX_WIDTH == _numba_fused.MAX_WIDTH


def test_kernel_cache_check_reads_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLP_ACCEL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    spec = NetworkSpec((3, 5, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    other = NetworkSpec((3, 6, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert numba_kernels_cached(spec)[0] is False
    (tmp_path / "mlp_accel_fused_abc.py").write_text(f'"""Generated for {spec!r}."""\n')
    assert numba_kernels_cached(spec)[0] is False  # source written, nothing compiled yet
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "mlp_accel_fused_abc.train_chunk-12.py311.nbi").write_text("")
    assert numba_kernels_cached(spec)[0] is True
    assert numba_kernels_cached(other)[0] is False
    wide = NetworkSpec((3, 100, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert numba_kernels_cached(wide)[0] is True  # no fused kernel to compile


def test_a_cached_generic_network_kernel_counts_for_every_shape_of_its_kind(tmp_path, monkeypatch):
    from mlp_accel.backends._numba_paths import generic_title

    monkeypatch.setenv("MLP_ACCEL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    spec = NetworkSpec((3, 5, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    other_shape = NetworkSpec((7, 9, 4, 1), ("relu", "relu", "sigmoid"), spec.loss, "float32")
    other_kind = NetworkSpec((3, 5, 1), ("tanh", "sigmoid"), spec.loss, "float32")
    title = generic_title("float32", ("identity", "relu", "sigmoid"), spec.loss, "sigmoid")
    (tmp_path / "mlp_accel_generic_abc.py").write_text(f'"""Generated for {title}."""\n')
    assert numba_kernels_cached(spec)[0] is False
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "mlp_accel_generic_abc.train_serial-9.py311.nbi").write_text("")
    assert numba_kernels_cached(spec)[0] is True
    assert numba_kernels_cached(other_shape)[0] is True
    assert numba_kernels_cached(other_kind)[0] is False


def test_kernel_cache_check_follows_numba_cache_dir(tmp_path, monkeypatch):
    # With NUMBA_CACHE_DIR set, Numba keeps the index of a generated module's kernels there,
    # in a folder named for the module's directory and the SHA-1 of its path, not beside it.
    import hashlib

    kernels, numba_dir = tmp_path / "kernels", tmp_path / "numba"
    kernels.mkdir()
    monkeypatch.setenv("MLP_ACCEL_CACHE_DIR", str(kernels))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(numba_dir))
    spec = NetworkSpec((3, 5, 1), ("relu", "sigmoid"), "binary_cross_entropy", "float32")
    (kernels / "mlp_accel_fused_abc.py").write_text(f'"""Generated for {spec!r}."""\n')
    index = numba_dir / f"kernels_{hashlib.sha1(str(kernels.resolve()).encode()).hexdigest()}"
    (kernels / "__pycache__").mkdir()
    (kernels / "__pycache__" / "mlp_accel_fused_abc.train_chunk-12.py311.nbi").write_text("")
    assert numba_kernels_cached(spec)[0] is False  # Numba does not look beside the file now
    index.mkdir(parents=True)
    (index / "mlp_accel_fused_abc.train_chunk-12.py311.nbi").write_text("")
    assert numba_kernels_cached(spec)[0] is True


def test_model_on_auto_records_its_choice_and_moves_at_fit(monkeypatch, rng):
    monkeypatch.delenv("MLP_ACCEL_BACKEND", raising=False)
    model = ma.MLP([2, 4, 1], seed=0)
    assert model.backend.name == "numpy" and "no job" in model.backend_choice.reason
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] > 0).astype(float)
    ma.fit(model, X, y, epochs=2)
    assert model.backend_choice.name == model.backend.name == "numpy"
    assert "200 rows x 2 epochs" in model.backend_choice.reason

    # A job that pays for Numba moves the model, with its weights, before training starts.
    monkeypatch.setattr(
        "mlp_accel.backends._auto.estimate_seconds",
        lambda name, job, **kw: {"numpy": 10.0, "numba": 1.0}.get(name, 99.0),
    )
    if "numba" not in ma.available_backends():
        pytest.skip("numba does not start here")
    # The shape and dtype of test_threads.py's fused kernel: compiled once for both.
    before = ma.MLP([2, 4, 3, 1], backend="numpy", dtype="float64", seed=0).get_weights()
    moved = ma.MLP([2, 4, 3, 1], dtype="float64", seed=0)
    ma.fit(moved, X, y, epochs=1, optimizer=ma.optim.SGD(1e-12))
    assert moved.backend.name == "numba" and moved.backend_choice.name == "numba"
    for a, b in zip(moved.get_weights(), before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    ma.fit(moved, X, y, epochs=1)  # decided once: a later fit keeps the backend
    assert moved.backend.name == "numba"


def test_named_backend_and_environment_override_record_no_choice(monkeypatch):
    assert ma.MLP([2, 1], backend="numpy").backend_choice is None
    monkeypatch.setenv("MLP_ACCEL_BACKEND", "numpy")
    model = ma.MLP([2, 1])
    assert model.backend_choice is None and model.backend.name == "numpy"


def test_backends_command_explains_the_rule():
    out = subprocess.run(
        [sys.executable, "-m", "mlp_accel", "backends"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "models on auto" in out.stdout and "start-up + steps x step time" in out.stdout
    assert "usable CPUs" in out.stdout


def test_auto_compiles_for_the_next_run_only_where_numba_would_win():
    # Cold caches: numba loses this run (NumPy-speed steps while compiling), but would win it
    # once compiled, so the choice asks for a compile for the next run; a small job does not.
    long_job = Job(CIRCLES_BIG.widths, "float32", CIRCLES_BIG.rows, 150)
    cold = dict(numba_fused_cached=False, numba_generic_cached=False)
    choice = choose_backend(long_job, CPU, **cold)
    assert choice.name == "numpy" and choice.compile_numba
    assert "compiling for the next run" in choice.reason
    assert not choose_backend(TUTORIAL, CPU, **cold).compile_numba
    warm = choose_backend(long_job, CPU)
    assert warm.name == "numba" and not warm.compile_numba


@pytest.mark.parametrize("cpus, at_once", [(2, False), (4, True)])
def test_the_compile_for_the_next_run_waits_for_the_exit_on_a_small_machine(
    cpus, at_once, monkeypatch
):
    # This run does not use the kernels: on 2 CPUs their compile would share its cores.
    from mlp_accel.backends import _numba_compile as C
    from mlp_accel.backends import _threads

    started: list[list[dict]] = []
    monkeypatch.delenv("MLP_ACCEL_NUMBA_COMPILE", raising=False)
    monkeypatch.setattr(_threads, "usable_cpus", lambda *a, **k: cpus)
    monkeypatch.setattr(C, "_start_detached", lambda tasks: started.append(tasks) or True)
    monkeypatch.setattr(C, "_next_run", {})
    monkeypatch.setattr(C, "_compiler", C._Compiler())  # _exit() shuts it down
    spec = NetworkSpec((2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
    assert C.compile_for_next_run(spec)
    kinds = ["generic", "layers", "fused"]
    if at_once:
        assert [t["kind"] for t in started[0]] == kinds and not C._next_run
    else:
        assert started == [] and [t["kind"] for t in C._next_run.values()] == kinds
        C._exit()
        assert [t["kind"] for t in started[0]] == kinds


def test_choosing_numpy_on_cold_caches_does_not_import_numba(tmp_path):
    # The long job of the test above, settled on cold caches: numpy now, numba's kernels for
    # the next run; none of it may import Numba (half a second of the run it would slow).
    code = (
        "import sys\n"
        "from mlp_accel.backends import NetworkSpec, _numba_compile as C\n"
        "from mlp_accel._auto_request import settle_auto\n"
        "C._start_detached = lambda tasks: print(len(tasks)) or True\n"
        "spec = NetworkSpec((2, 4, 3, 1), ('relu', 'relu', 'sigmoid'),"
        " 'binary_cross_entropy', 'float32')\n"
        "choice, _ = settle_auto(spec, 200000, 150, None, {})\n"
        "print(choice.name, choice.compile_numba, 'numba' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "MLP_ACCEL_CACHE_DIR": str(tmp_path / "k"),
        "NUMBA_CACHE_DIR": str(tmp_path / "n"),
    }
    env.pop("MLP_ACCEL_NUMBA_COMPILE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    # (on 2 usable CPUs the three tasks go to the detached child at exit, printed last)
    assert out.stdout.split()[:3] == ["numpy", "True", "False"]
