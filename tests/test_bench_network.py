"""``mlp-accel bench --layers``: the user's network, the one-line answer, the machine's warnings.

The CLI case runs one tiny network on the numpy backend in a few seconds; the advice and the
BLAS check are tested on made-up rows and flags.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlp_accel.bench import report as bench_report
from mlp_accel.bench.advice import backend_advice, threads_advice
from mlp_accel.bench.blas_check import blas_warnings
from mlp_accel.bench.cases import network_shape
from mlp_accel.cli import main

ROOT = Path(__file__).resolve().parents[1]
AVX512 = ["fpu", "sse2", "avx", "avx2", "avx512f"]


def test_network_shape_names_and_heads():
    many, one = network_shape([64, 128, 10], 128), network_shape([8, 1], 32)
    assert many.name == "64-128-10@128" and many.family == "64-128-10" and many.batch == 128
    assert many.activations == ("relu", "softmax") and many.loss == "cross_entropy"
    assert one.activations == ("sigmoid",) and one.loss == "binary_cross_entropy"


@pytest.mark.parametrize("layers, batch", [([64], 8), ([64, 0, 10], 8), ([4, 2], 0)])
def test_network_shape_refuses_bad_networks(layers, batch):
    with pytest.raises(ValueError, match="positive"):
        network_shape(layers, batch)


def _row(impl: str, rate: float, low: float, high: float, dtype: str = "float32") -> dict:
    return {
        "shape": "4-8-2@16",
        "kind": "backend",
        "impl": impl,
        "dtype": dtype,
        "train_samples_per_sec": rate,
        "train_samples_per_sec_range": [low, high],
    }


def test_backend_advice_names_the_fastest_or_says_either():
    shape = network_shape([4, 8, 2], 16)
    apart = [_row("numpy", 1e5, 0.9e5, 1.1e5), _row("numba", 3e5, 2.9e5, 3.1e5)]
    line = backend_advice(apart, shape)
    assert line == (
        "which backend for 4-8-2 at batch 16: float32 -> numba (300k train samples/s, 3.00x numpy)"
    )
    close = [_row("numpy", 1e5, 0.8e5, 1.2e5), _row("numba", 1.1e5, 0.9e5, 1.3e5)]
    assert "numpy is as fast within the spread: either" in backend_advice(close, shape)
    assert "the only backend measured" in backend_advice(apart[:1], shape)
    assert "none measured" in backend_advice([], shape)


def test_threads_advice_busy_idle_and_limited():
    busy = threads_advice({"load_average_before": [1.5, 1, 1], "usable_cpus": 2}, None)
    assert busy and busy[0].startswith("busy machine") and "--threads 1" in busy[0]
    idle = threads_advice({"load_average_before": [0.1, 0, 0], "usable_cpus": 2}, None)
    assert "--threads 1" in idle[0] and not idle[0].startswith("busy")
    assert threads_advice({"load_average_before": [9, 9, 9], "usable_cpus": 2}, 1) == []


def test_blas_warning_for_an_older_core_type():
    pools = [{"internal_api": "openblas", "architecture": "Haswell", "library": "libopenblas.so"}]
    (line,) = blas_warnings(pools, AVX512, {"OPENBLAS_CORETYPE": "Haswell"})
    assert "Haswell kernels (AVX2) on a CPU with AVX-512" in line
    assert "OPENBLAS_CORETYPE=Haswell is set: unset it" in line
    # The CPU's own kernels, or a CPU no wider than the kernels: nothing to say.
    own = [{**pools[0], "architecture": "SkylakeX"}]
    assert blas_warnings(own, AVX512, {}) == []
    assert blas_warnings(pools, ["avx", "avx2"], {}) == []
    # Set before any OpenBLAS is loaded: the variable itself is the warning.
    (early,) = blas_warnings([], AVX512, {"OPENBLAS_CORETYPE": "Sandybridge"})
    assert "OPENBLAS_CORETYPE=Sandybridge (AVX)" in early


def test_header_prints_the_blas_warning(monkeypatch):
    from mlp_accel.bench import machine

    monkeypatch.setattr(machine, "blas_warnings", lambda pools: ["libx runs Haswell kernels"])
    header = machine.system_info()
    assert header["warnings"] == ["libx runs Haswell kernels"]


def test_cli_bench_layers_ends_with_the_answer(capsys):
    argv = ["bench", "--layers", "4,8,2", "--batch-size", "16", "--backends", "numpy"]
    argv += ["--dtype", "float32", "--quick", "--no-peers", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("which backend for 4-8-2 at batch 16: float32 -> numpy")
    assert any(line.startswith("4-8-2@16") for line in lines)
    assert not any("batch-size sweep" in line for line in lines)


def test_cli_bench_batch_size_needs_layers(capsys):
    assert main(["bench", "--batch-size", "16", "--quiet"]) == 1
    assert "--batch-size needs --layers" in capsys.readouterr().err


def test_stored_results_table_has_the_printed_columns():
    # The columns every run prints (peers and the first-run column come on top of these).
    always = [name for name, _ in bench_report._columns({"rows": []})]
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    stored = text.split("<!-- bench-table:start -->")[1].split("<!-- bench-table:end -->")[0]
    header = next(line for line in stored.splitlines() if line.startswith("| shape"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert [c for c in cells if not re.fullmatch(r"x (?!numpy$)\S+|first run", c)] == always


def test_every_column_is_explained_in_the_benchmarks_readme():
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    for name, _ in bench_report.COLUMN_NOTES:
        assert f"| `{name}`" in text, name
