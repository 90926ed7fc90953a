"""backend="auto" and the numba kernel tier: the cost model (a pure function of the job,
never of timings or the cache), and the model that records its choice and moves at its
first fit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.backends import NetworkSpec
from mlp_accel.backends._auto import (
    NARROW_MAX_WIDTH,
    Job,
    choose_backend,
    estimate_seconds,
    numba_tier,
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

# (job, available, expected backend): compiles are always counted, whatever is cached
TABLE = [
    (DIGITS, CPU, "numpy"),  # compiling can never pay back
    (WINE, CPU, "numpy"),
    (TUTORIAL, CPU, "numpy"),  # 0.2 M samples: loading numba costs more
    (CIRCLES_BIG, CPU, "numpy"),  # seconds of compilation: not on this job
    (STREAMING, CPU, "numba"),  # long enough to pay for compiling
    (MNIST, CPU, "numpy"),  # GEMM-bound: both run BLAS, within the margin
    (MNIST_TINY, CPU, "numpy"),  # within the margin: the safer numpy
    (MNIST, GPU, "cupy"),
    (TUTORIAL, GPU, "numpy"),  # the GPU's start-up dwarfs the job
    (CIRCLES_BIG, ("numba",), "numba"),  # the only one there
]


@pytest.mark.parametrize("job, available, expected", TABLE)
def test_auto_rule(job, available, expected):
    choice = choose_backend(job, available)
    assert choice.name == expected, choice.reason
    assert set(choice.estimates) == set(available)
    assert "estimated" in choice.reason and f"{job.epochs} epochs" in choice.reason
    assert choose_backend(job, available) == choice  # a pure function of its inputs


def test_auto_without_a_job_is_numpy():
    choice = choose_backend(None, CPU)
    assert choice.name == "numpy" and "no job" in choice.reason


def test_estimates_grow_with_the_job_and_a_long_job_pays_its_compile():
    small = estimate_seconds("numba", TUTORIAL)
    assert estimate_seconds("numba", CIRCLES_BIG) > small
    long_job = Job(CIRCLES_BIG.widths, "float32", CIRCLES_BIG.rows, 5_000)
    assert estimate_seconds("numba", long_job) < estimate_seconds("numpy", long_job) / 2
    assert estimate_seconds("numpy", TUTORIAL) < estimate_seconds("numpy", CIRCLES_BIG)
    f64 = Job(MNIST.widths, "float64", MNIST.rows, MNIST.epochs, MNIST.batch_size)
    assert estimate_seconds("numpy", f64) > estimate_seconds("numpy", MNIST)


TINY = NetworkSpec((2, 4, 3, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
NARROW = NetworkSpec((2, 16, 16, 1), ("relu", "relu", "sigmoid"), "binary_cross_entropy", "float32")
WIDE = NetworkSpec((64, 256, 10), ("relu", "softmax"), "cross_entropy", "float32")


@pytest.mark.parametrize(
    "spec, job, expected",
    [
        (TINY, None, "generic"),  # no job known: the kernel every narrow shape shares
        (WIDE, None, "layers"),
        (TINY, TUTORIAL, "layers"),  # too short to repay a network kernel's compile
        (TINY, STREAMING, "specialized"),  # the smallest shapes' kernel pays, and compiles fast
        (NARROW, Job((2, 16, 16, 1), rows=10_000_000, epochs=20, batch_size=1024), "generic"),
        (WIDE, MNIST, "layers"),
    ],
)
def test_numba_tier_rule(spec, job, expected):
    tier, why = numba_tier(spec, job)
    assert tier == expected, why
    assert numba_tier(spec, job) == (tier, why)


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
    from mlp_accel.backends.numba import fused

    assert NARROW_MAX_WIDTH == fused.MAX_WIDTH


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
        lambda name, job: {"numpy": 10.0, "numba": 1.0}.get(name, 99.0),
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
    assert "auto, for a model" in out.stdout and "start-up + steps x step time" in out.stdout
    assert "get_backend('auto') knows no job" in out.stdout and "e.g. mlp-accel train" in out.stdout
    assert "usable CPUs" in out.stdout


def test_choosing_numpy_does_not_import_numba():
    # The choice reads nothing of Numba (nor its cache): half a second of the run it would slow.
    code = (
        "import sys\n"
        "from mlp_accel.backends import NetworkSpec\n"
        "from mlp_accel._auto_request import settle_auto\n"
        "spec = NetworkSpec((2, 4, 3, 1), ('relu', 'relu', 'sigmoid'),"
        " 'binary_cross_entropy', 'float32')\n"
        "choice, _ = settle_auto(spec, 200000, 150, None, {})\n"
        "print(choice.name, 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "False"]
