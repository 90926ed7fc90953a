"""The benchmark suite cannot rot: a tiny quick bench, its table, JSON, plot and CLI.

These run in seconds on the numpy backend; the full suite is ``pytest benchmarks
--benchmark-only`` and ``mlp-accel bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import bench
from mlp_accel.cli import main

TINY = dict(
    backends=["numpy"],
    shapes=["tutorial-1k"],
    dtypes=("float32",),
    quick=True,
    sweep_batch_sizes=[64, 128],
    threads=1,
)


@pytest.fixture(scope="module")
def report() -> dict:
    return bench.run_bench(bench.BenchConfig(**TINY))


def test_report_structure(report):
    assert report["schema"] == bench.SCHEMA
    header = report["header"]
    for key in ("date", "cpu", "logical_cpus", "threads", "versions", "gpu", "backends"):
        assert key in header
    assert header["threads"]["limit"] == 1
    assert "numpy" in header["versions"] and "mlp_accel" in header["versions"]
    assert {(g["backend"], g["dtype"]) for g in report["gemm"]} == {("numpy", "float32")}
    assert report["gemm"][0]["gflops"] > 0

    rows = {r["impl"]: r for r in report["rows"]}
    assert rows["numpy"]["kind"] == "backend"
    assert rows["lean-numpy"]["kind"] == "reference"
    assert rows["sklearn"]["kind"] == "peer" and rows["sklearn"]["label"].endswith("(peer)")
    numpy_row = rows["numpy"]
    for key in ("train", "fit", "infer"):
        assert numpy_row[f"{key}_samples_per_sec"] > 0
    assert numpy_row["ratio_to_numpy"] == pytest.approx(1.0)
    assert numpy_row["fit_to_lean"] > 0
    assert numpy_row["ratio_to_peer"]["sklearn"] > 0
    assert numpy_row["peak_rss_bytes"] > 0
    # The tutorial network is not GEMM-bound: no fraction of the GEMM rate is claimed.
    assert numpy_row["gemm_fraction"] is None

    assert {r["batch"] for r in report["sweep"]} == {64, 128}
    assert report["crossovers"] and "no crossover" in report["crossovers"][0]
    json.dumps(report)  # everything is JSON-serializable


def test_table_and_markdown(report):
    table = bench.format_table(report)
    for text in ("train/s", "fit/s", "infer/s", "x numpy", "fit/lean", "x sklearn", "%GEMM"):
        assert text in table
    assert "lean-numpy (ref)" in table and "sklearn (peer)" in table
    assert "machine:" in table and "threads:" in table and "versions:" in table
    assert "batch-size sweep" in table and "crossovers:" in table
    markdown = bench.format_markdown(report)
    assert "| tutorial-1k | float32 | numpy |" in markdown


def test_json_and_plot(report, tmp_path):
    path = tmp_path / "bench.json"
    bench.write_json(report, path)
    assert json.loads(path.read_text())["rows"][0]["shape"] == "tutorial-1k"
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    bench.plot_report(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gemm_bound_shape_reports_fraction():
    config = bench.BenchConfig(**{**TINY, "shapes": ["mlp256-1024"], "peers": False})
    config.sweep = False
    rows = bench.run_bench(config)["rows"]
    assert len(rows) == 1 and 0 < rows[0]["gemm_fraction"] < 5


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "--backends",
            "numpy",
            "--shapes",
            "tutorial-1k",
            "--dtype",
            "float64",
            "--quick",
            "--no-peers",
            "--sweep-batches",
            "64,256",
            "--threads",
            "1",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "tutorial-1k" in printed and "float64" in printed
    data = json.loads(out.read_text())
    assert data["config"]["dtypes"] == ["float64"] and data["config"]["threads"] == 1


@pytest.mark.parametrize(
    "args, valid",
    [
        (["--backends", "nope"], "valid backends: numpy"),
        (["--shapes", "huge"], "valid shapes: tutorial-1k"),
    ],
)
def test_cli_bench_unknown_names(args, valid, capsys):
    code = main(["bench", "--quick", "--quiet", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert valid in err and err.count("\n") == 1


def test_cli_bench_bad_output_dir_fails_before_measuring(tmp_path, capsys):
    code = main(["bench", "--quick", "--json", str(tmp_path / "missing" / "b.json")])
    assert code != 0 and "does not exist" in capsys.readouterr().err


def test_lean_reference_is_the_same_step():
    """The lean reference does what the library does: same weights after the same steps."""
    shape = bench.SHAPES["mlp256-1024"].with_batch(32)
    data = bench.host_data(shape, "float64")
    work = bench.make_workload("numpy", shape, "float64", data=data)
    lean = bench.LeanNumpyMLP(shape, "float64", data)
    for _ in range(3):
        loss_lib = float(work.model.train_step(work.X, work.Y, work.optimizer))
        loss_lean = lean.train_step()
        assert loss_lean == pytest.approx(loss_lib, rel=1e-10)
    for got, want in zip([*lean.W, *lean.b], [*work.model.params[0::2], *work.model.params[1::2]]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_sklearn_peer_same_layers():
    shape = bench.SHAPES["tutorial-1k"]
    peer = bench.sklearn_peer(shape, "float32", bench.host_data(shape, "float32"))
    peer.train()
    peer.infer()
    assert peer.label.endswith("(peer)")


def test_torch_peer_skips_cleanly_when_absent():
    shape = bench.SHAPES["tutorial-1k"]
    data = bench.host_data(shape, "float32")
    try:
        peer = bench.torch_peer(shape, "float32", data)
    except bench.PeerUnavailable as exc:
        assert "PyTorch" in str(exc)
    else:
        peer.train()
        peer.infer()


def test_crossover_sentences():
    def sweep(a_rates, b_rates, batches=(64, 128, 256, 512)):
        rows = []
        for name, rates in (("numpy", a_rates), ("numba", b_rates)):
            rows += [
                {"family": "tutorial", "dtype": "float32", "backend": name, "batch": b,
                 "train_samples_per_sec": r}
                for b, r in zip(batches, rates)
            ]  # fmt: skip
        return bench.crossovers(rows)

    assert sweep([1, 1, 1, 1], [2, 2, 2, 2]) == [
        "numba beats numpy at every batch from 64 to 512 (tutorial, float32)"
    ]
    assert sweep([2, 2, 1, 1], [1, 1, 2, 2]) == [
        "numba beats numpy from batch 256 (tutorial, float32)"
    ]
    assert sweep([1, 1, 2, 2], [2, 2, 1, 1]) == [
        "numpy beats numba from batch 256 (tutorial, float32)"
    ]
    mixed = sweep([2, 1, 2, 1], [1, 2, 1, 2])[0]
    assert mixed.startswith("numpy beats numba at batches 64, 256")


def test_thread_limits_restore():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with bench.thread_limits(1):
        assert bench.thread_info()["limit"] == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before
    with pytest.raises(ValueError, match="positive"):
        with bench.thread_limits(0):
            pass


def test_gpu_only_case_skips_on_cpu():
    ok, why = bench.shape_runs_on(bench.SHAPES["mnist-65536"], ma.get_backend("numpy"), "float32")
    assert not ok and "GPU" in why


def test_cli_does_not_import_heavy_peers():
    code = (
        "import sys, mlp_accel, mlp_accel.cli as c; c.build_parser(); "
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib', 'cupy', 'numba') "
        "if m in sys.modules]; print(heavy); assert not heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
