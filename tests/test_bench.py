"""The benchmark suite cannot rot: a tiny quick bench, its table, JSON, plot and CLI.

These run in seconds on the numpy backend; the full suite is ``pytest benchmarks
--benchmark-only`` and ``mlp-accel bench``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
    predict=False,  # the inference rows: tests/test_bench_predict.py
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
    # The step's own allocations (tracemalloc), not the process's peak RSS, fill the column.
    assert 0 < numpy_row["step_alloc_bytes"] < numpy_row["process_peak_rss_bytes"]
    assert numpy_row["step_alloc_complete"] is True
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
            "--contended",
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
    # --contended: the busy process ran during the bench, is recorded, and is gone.
    busy = data["header"]["contended"]
    assert data["config"]["contended"] is True and busy["cpu_seconds"] > 0
    assert "contended: a busy process" in printed
    if os.path.isdir("/proc/self"):
        assert _gone(busy["pid"])
    assert data["config"]["first_run"] is False  # opt-in with --quick


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "--threads: must be a positive integer, got '0'"),
        (["--threads", "-2"], "--threads: must be a positive integer, got '-2'"),
        (["--seed", "-1"], "--seed: must be an integer from 0 to 4294967295, got '-1'"),
    ],
)
def test_cli_bench_bad_threads_or_seed_is_a_usage_error(args, message, capsys):
    # --backends nope: were the value accepted, the run would stop at once, exit 1.
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick", "--quiet", "--backends", "nope", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threads", 0, "threads must be a positive integer, got 0"),
        ("threads", True, "threads must be a positive integer, got True"),
        ("seed", -1, "seed must be a non-negative integer, got -1"),
        ("seed", 1.5, "seed must be a non-negative integer, got 1.5"),
    ],
)
def test_bench_config_refuses_bad_threads_and_seed_before_running(field, value, message):
    config = bench.BenchConfig(**{**TINY, field: value})
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):  # before any backend starts or GEMM runs
        bench.run_bench(config)


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


def test_rows_carry_spread_and_rounds(report):
    """Every rate comes with its min-max range over rounds and the round count."""
    assert report["header"]["spread"] == bench.SPREAD == "min-max over rounds"
    for row in report["rows"]:
        low, high = row["train_samples_per_sec_range"]
        assert low <= row["train_samples_per_sec"] <= high
        assert row["train_rounds"] >= 3
    numpy_row = next(r for r in report["rows"] if r["impl"] == "numpy")
    for what in ("fit", "infer"):
        low, high = numpy_row[f"{what}_samples_per_sec_range"]
        assert low <= numpy_row[f"{what}_samples_per_sec"] <= high
    for record in report["sweep"]:
        low, high = record["train_samples_per_sec_range"]
        assert low <= record["train_samples_per_sec"] <= high and record["rounds"] >= 3
    gemm = report["gemm"][0]
    assert gemm["gflops_range"][0] <= gemm["gflops"] == gemm["gflops_range"][1]
    assert gemm["rounds"] >= 2
    table = bench.format_table(report)
    assert "range" in table and "rounds" in table and "step alloc" in table
    assert "peak RSS" not in table


def test_load_average_before_and_after(report):
    header = report["header"]
    for key in ("load_average_before", "load_average_after"):
        assert len(header[key]) == 3 and all(x >= 0 for x in header[key])
    assert header["contended"] is None
    table = bench.format_table(report)
    assert "load average (1, 5, 15 min): before" in table and "contended: no" in table


def test_timing_stats_spread():
    t = bench.Timing.of([0.3, 0.1, 0.2])
    assert (t.median, t.low, t.high, t.rounds) == (0.2, 0.1, 0.3, 3)
    assert t.rate(6) == pytest.approx((30.0, 20.0, 60.0))
    stats = bench.time_interleaved_stats({"a": lambda: None}, min_rounds=4, min_time=0.0)
    assert stats["a"].rounds == 4 and stats["a"].low <= stats["a"].median <= stats["a"].high
    with pytest.raises(ValueError, match="no timing samples"):
        bench.Timing.of([])


def _sweep_rows(rates, batches=(64, 128, 256, 512)):
    """Sweep records of numpy and numba with ``(median, low, high)`` per batch."""
    rows = []
    for name, series in rates.items():
        for b, (median, low, high) in zip(batches, series):
            rows.append(
                {"family": "tutorial", "dtype": "float32", "backend": name, "batch": b,
                 "train_samples_per_sec": median, "train_samples_per_sec_range": [low, high]}
            )  # fmt: skip
    return rows


def test_crossover_withheld_when_spreads_overlap():
    """A crossover inside the noise is not reported as a fact (a run where one round collapses
    could otherwise claim "numpy beats numba from batch 2048")."""
    rows = _sweep_rows(
        {
            "numpy": [(2, 1.9, 2.1), (2, 1.9, 2.1), (1, 0.9, 1.1), (1, 0.9, 1.1)],
            # At 256 numba's median is higher but its slowest round is below numpy's best.
            "numba": [(1, 0.9, 1.1), (1, 0.9, 1.1), (1.5, 0.5, 2.0), (2, 1.9, 2.1)],
        }
    )
    claims, warnings = bench.compare_sweep(rows)
    assert not any("from batch" in c or "every batch" in c for c in claims)
    assert "numpy beats numba at batches 64-128 (tutorial, float32)" in claims
    assert "numba beats numpy at batches 512 (tutorial, float32)" in claims
    assert len(warnings) == 1
    assert "overlap at batches 256" in warnings[0] and "numpy vs numba" in warnings[0]
    assert bench.crossovers(rows) == claims
    # Apart ranges at every batch: the crossover is reported.
    rows = _sweep_rows(
        {
            "numpy": [(2, 1.9, 2.1), (2, 1.9, 2.1), (1, 0.9, 1.1), (1, 0.9, 1.1)],
            "numba": [(1, 0.9, 1.1), (1, 0.9, 1.1), (2, 1.9, 2.1), (2, 1.9, 2.1)],
        }
    )
    assert bench.compare_sweep(rows) == (
        ["numba beats numpy from batch 256 (tutorial, float32)"],
        [],
    )


def test_every_batch_claim_withheld_when_all_overlap():
    rows = _sweep_rows({"numpy": [(1, 0.5, 1.5)] * 4, "numba": [(1.2, 0.8, 1.6)] * 4})
    claims, warnings = bench.compare_sweep(rows)
    assert claims == [] and "overlap at batches 64-512" in warnings[0]


def test_withheld_claims_printed_as_warnings(report):
    fake = {**report, "warnings": ["numpy vs numba (tutorial, float32): spreads overlap"]}
    assert "warning, claims withheld:" in bench.format_table(fake)
    assert "**claim withheld**" in bench.format_markdown(fake)


def test_ratio_marked_when_ranges_overlap(report):
    rows = [dict(r) for r in report["rows"]]
    numpy_row = next(r for r in rows if r["impl"] == "numpy")
    lean = next(r for r in rows if r["impl"] == "lean-numpy")
    lean["train_samples_per_sec_range"] = list(numpy_row["train_samples_per_sec_range"])
    lean["ratio_to_numpy_overlaps"] = None
    bench.rows.add_ratios(rows, {})
    assert lean["ratio_to_numpy_overlaps"] is True
    assert numpy_row["ratio_to_numpy_overlaps"] is None  # not compared with itself
    lean["train_samples_per_sec_range"] = [x * 10 for x in numpy_row["train_samples_per_sec_range"]]
    bench.rows.add_ratios(rows, {})
    assert lean["ratio_to_numpy_overlaps"] is False
    assert bench.ranges_overlap([1, 2], [2, 3]) and not bench.ranges_overlap([1, 2], [3, 4])
    assert not bench.ranges_overlap(None, [1, 2])


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


@needs_proc
def test_busy_process_runs_pinned_and_stops():
    with bench.busy_process() as info:
        pid = info["pid"]
        time.sleep(0.5)
        assert not _gone(pid, timeout=0)
        if info["pinned"]:
            assert os.sched_getaffinity(pid) == {info["cpu"]}
    assert _gone(pid)
    assert info["cpu_seconds"] > 0.1 and info["running_at_end"] is True


@needs_proc
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_busy_process_stopped_on_error_and_ctrl_c(error):
    with pytest.raises(error):
        with bench.busy_process() as info:
            raise error("boom")
    assert _gone(info["pid"])


@needs_proc
def test_busy_process_exits_when_the_bench_is_killed():
    """A bench that dies without cleaning up (SIGKILL) leaves no spinning orphan."""
    code = (
        "import os; from mlp_accel.bench.contention import busy_process\n"
        "info = busy_process().__enter__(); print(info['pid'], flush=True); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert _gone(int(out.stdout.split()[-1]))


def test_busy_process_rejects_unusable_cpu():
    with pytest.raises(ValueError, match="not usable"):
        with bench.busy_process(cpu=10_000):
            pass


def test_step_allocation_sees_numpy():
    assert bench.step_allocation(lambda: np.ones(1_000_000)) >= 8_000_000
    keep = np.ones(1_000_000)
    assert bench.step_allocation(lambda: keep.sum()) < 100_000


def test_first_run_default_off_in_quick_only():
    assert bench.BenchConfig().measure_first_run is True
    assert bench.BenchConfig(quick=True).measure_first_run is False
    assert bench.BenchConfig(quick=True, first_run=True).measure_first_run is True


def test_first_run_fresh_process():
    shape = bench.SHAPES["tutorial-1k"].with_batch(64)
    result = bench.first_run("numpy", "backend", shape, "float32", threads=1)
    assert result["seconds"] > result["import_seconds"] > 0
    assert result["seconds"] >= result["startup_seconds"] > 0
    with pytest.raises(RuntimeError, match="unknown backend"):
        bench.first_run("nope", "backend", shape, "float32")
    with pytest.raises(ValueError, match="kind"):
        bench.first_run("numpy", "library", shape, "float32")


def test_first_run_column_in_report():
    config = bench.BenchConfig(**{**TINY, "sweep": False, "first_run": True})
    report = bench.run_bench(config)
    rows = {r["impl"]: r for r in report["rows"]}
    assert rows["numpy"]["first_run"]["seconds"] > 0
    assert rows["sklearn"]["first_run"]["seconds"] > 0
    assert rows["lean-numpy"]["first_run"] is None
    table = bench.format_table(report)
    assert "first run" in table and "empty Numba/mlp_accel/CuPy caches" in table


def _script(name: str):
    """``benchmarks/<name>.py`` as a module (a script, not part of the package).

    Loading runs the script's top level; what it writes to ``os.environ`` there (gpu_compare
    turns TF32 off) is undone, so that it cannot leak into other tests.
    """
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    saved = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def _real_use():
    """``benchmarks/real_use.py`` as a module."""
    return _script("real_use")


def test_real_use_rejects_bad_options(capsys):
    real_use = _real_use()
    assert real_use.main(["--cases", "XL"]) == 2
    assert "unknown case 'XL'" in capsys.readouterr().err
    assert real_use.main(["--rounds", "0"]) == 2
    assert real_use.main(["--part", "firstrun", "--jobs", "mnist"]) == 2
    assert real_use.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


@needs_proc
def test_real_use_contended_part_runs(tmp_path, capsys):
    """The contended part end to end on the smallest case: workers, busy process, table."""
    real_use = _real_use()
    out = tmp_path / "real_use.json"
    argv = ["--part", "contended", "--rounds", "1", "--backends", "numpy", "--cases", "S1k"]
    assert real_use.main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| S1k | 2-4-3-1 @ 1,000 | numpy |" in printed and "load average" in printed
    data = json.loads(out.read_text())
    contended = data["throughput"]["contended"]["results"]
    assert (
        contended["S1k | numpy | default"]["n"] == contended["S1k | numpy | one thread"]["n"] == 1
    )


def test_real_use_first_run_job(tmp_path):
    real_use = _real_use()
    job = real_use.JOBS["wine 13-32-3, 300 full-batch epochs"]
    assert real_use.run_job({**job, "epochs": 2}, "numpy", str(tmp_path)) > 0
    with pytest.raises(RuntimeError, match="nope on wine"):
        real_use.run_job({**job, "epochs": 2}, "nope", str(tmp_path))


def test_real_use_verdict_follows_the_spread():
    """A target is met or missed only when the whole spread of the ratio says so."""
    real_use = _real_use()
    spread = real_use.spread
    results = {
        ("S1k", "numpy", False): spread([1.0, 1.1, 0.9]),
        ("S1k", "numpy", True): spread([1.0, 1.05, 0.95]),
        ("M", "numpy", False): spread([0.2, 0.25]),
        ("M", "numpy", True): spread([1.0, 1.1]),
        ("L", "numpy", False): spread([0.5, 1.0]),
        ("L", "numpy", True): spread([0.9, 1.0]),
    }
    lines = real_use.throughput_table(results, ["S1k", "M", "L"], ["numpy"], 0.8)
    assert lines[2].endswith("| 1.00 (0.86-1.16) | yes |")
    assert lines[3].endswith("| no |")
    assert lines[4].endswith("| no by the median, not by the spread |")


# -- the helpers the benchmark scripts are built on ----------------------------------------------
def test_time_interleaved_stats_syncs_around_blocks():
    """With ``syncs``, a block is timed up to the end of the device work its calls queued."""
    queued: list[float] = []

    def launch() -> None:  # queues 2 ms of "device" work and returns at once
        queued.append(0.002)

    def synchronize() -> None:
        time.sleep(sum(queued))
        queued.clear()

    plain = bench.time_interleaved_stats({"a": launch}, min_rounds=3, min_time=0.0)
    assert plain["a"].median < 0.001  # without the sync the device work is not seen
    queued.clear()
    synced = bench.time_interleaved_stats(
        {"a": launch}, syncs={"a": synchronize}, min_rounds=3, max_rounds=3, min_time=0.0
    )
    assert synced["a"].rounds == 3 and synced["a"].low >= 0.0019
    assert not queued


def test_time_interleaved_passes_its_options_on():
    """``time_interleaved`` takes every keyword of ``time_interleaved_stats``, syncs too."""
    queued: list[float] = []

    def launch() -> None:
        queued.append(0.002)

    def synchronize() -> None:
        time.sleep(sum(queued))
        queued.clear()

    medians = bench.time_interleaved(
        {"a": launch}, syncs={"a": synchronize}, min_rounds=2, max_rounds=2, min_time=0.0
    )
    assert medians["a"] >= 0.0019 and not queued
    with pytest.raises(TypeError):
        bench.time_interleaved({"a": launch}, min_round=2)


def test_train_call_without_synchronize(monkeypatch):
    """``synchronize=False`` leaves the wait to the caller; the step itself is the same."""
    shape = bench.SHAPES["tutorial-1k"].with_batch(64)
    data = bench.host_data(shape, "float64")
    synced = bench.make_workload("numpy", shape, "float64", data=data)
    unsynced = bench.make_workload("numpy", shape, "float64", data=data)
    waits = []
    monkeypatch.setattr(synced.backend, "synchronize", lambda: waits.append(1))
    bench.train_call(unsynced, synchronize=False)()
    assert waits == []
    bench.train_call(synced)()
    assert waits == [1]
    for a, b in zip(synced.model.get_weights(), unsynced.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_peer_synchronize_defaults_to_nothing():
    shape = bench.SHAPES["tutorial-1k"]
    peer = bench.sklearn_peer(shape, "float32", bench.host_data(shape, "float32"))
    assert peer.synchronize() is None


def test_write_table(tmp_path):
    path = tmp_path / "t.npy"
    bench.write_table(path, 1000, 5, classes=3, chunk_rows=64)
    table = np.load(path, mmap_mode="r")
    assert table.shape == (1000, 6) and table.dtype == np.float32
    labels = np.asarray(table[:, -1])
    assert set(np.unique(labels)) == {0.0, 1.0, 2.0}
    # The label is a linear rule of the features: a least-squares fit on one-hot targets finds it.
    X = np.asarray(table[:, :-1], dtype=np.float64)
    W = np.linalg.lstsq(X, np.eye(3)[labels.astype(int)], rcond=None)[0]
    assert np.mean(np.argmax(X @ W, axis=1) == labels) > 0.8
    bench.write_table(tmp_path / "one.npy", 1000, 5, classes=3, chunk_rows=1000)
    assert np.array_equal(np.load(tmp_path / "one.npy"), np.asarray(table))  # chunks: same table
    with pytest.raises(ValueError, match="classes >= 2"):
        bench.write_table(path, 10, 5, classes=1)


def test_with_generic_hooks():
    backend = ma.get_backend("numpy")
    generic = bench.with_generic_hooks(backend, "stream_to_device", "fused_network")
    assert generic is not backend and isinstance(generic, type(backend))
    assert generic.name == backend.name
    assert type(generic).stream_to_device is ma.backends.Backend.stream_to_device
    assert generic.fused_network(None) is None
    for bad in ("_activate", "no_such_hook", "name"):
        with pytest.raises(ValueError, match="not a hook of Backend"):
            bench.with_generic_hooks(backend, bad)


# -- the scripts in benchmarks/ (the GPU ones on the CPU) -----------------------------------------
def test_gpu_compare_runs_on_the_cpu(tmp_path, monkeypatch, capsys):
    """gpu_compare end to end on the numpy backend: its table, JSON, and targets judged."""
    gpu_compare = _script("gpu_compare")
    monkeypatch.setattr(gpu_compare, "TORCH_DEVICE", "cpu")
    argv = ["--backend", "numpy", "--quick", "--cases", "mlp256-1024", "--out", str(tmp_path)]
    rc = gpu_compare.main(argv)
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "gpu_compare.json").read_text())
    (row,) = data["rows"]
    assert row["case"] == "mlp256-1024" and row["batch"] == 1024 and row["rounds"] == 3
    assert row["ours_s_range"][0] <= row["ours_s"] <= row["ours_s_range"][1]
    assert row["ours_sps"] == pytest.approx(1024 / row["ours_s"])
    assert 0 < row["gemm_fraction"] and row["fused"] is False
    assert "mlp256-1024" in out and (tmp_path / "gpu_compare_table.txt").read_text() in out + "\n"
    if "ratio" in row:  # PyTorch installed: the ratio decides
        assert rc == (0 if row["pass"] else 2)
    else:  # no PyTorch: no ratio, so the target is not met
        assert rc == 2 and row["pass"] is False and "n/a" in out


def test_gpu_compare_judges_both_targets():
    judge = _script("gpu_compare").judge
    row = {"target": 1.0, "gemm_target": 0.6, "ratio": 1.2, "gemm_fraction": 0.7}
    assert judge(row) is True
    assert judge({**row, "gemm_fraction": 0.5}) is False
    assert judge({**row, "ratio": 0.9}) is False
    assert judge({"target": 3.0, "gemm_target": None}) is False  # no PyTorch ratio
    assert judge({"target": None, "gemm_target": None}) is None


def test_gpu_compare_plans_the_layered_row():
    """A backend with a fused kernel of its own is timed again without it, on the tutorial."""
    gpu_compare = _script("gpu_compare")
    numpy = ma.get_backend("numpy")

    class Fused(type(numpy)):
        def fused_network(self, spec):
            return "a kernel"

    fused = Fused()
    assert [label for *_, label in gpu_compare.plan(numpy, ["tutorial-100k"])] == [""]
    todo = gpu_compare.plan(fused, ["mlp256-1024", "tutorial-100k"])
    assert [(name, label) for name, _, label in todo] == [
        ("mlp256-1024", ""), ("tutorial-100k", ""), ("tutorial-100k", " (layers)")
    ]  # fmt: skip
    layered = todo[-1][1]
    assert isinstance(layered, Fused) and layered.fused_network(None) is None
    assert len(gpu_compare.plan(fused, ["mlp256-1024"])) == 1


def test_gpu_compare_rejects_bad_options(capsys):
    gpu_compare = _script("gpu_compare")
    with pytest.raises(SystemExit) as exc:
        gpu_compare.main(["--cases", "XL"])
    assert exc.value.code == 2 and "unknown case 'XL'" in capsys.readouterr().err
    assert gpu_compare.main(["--backend", "nope", "--cases", "mlp256-1024"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_compare: unknown backend 'nope'") and "\n" not in err


def test_numba_vs_numpy_measure_and_row():
    script = _script("numba_vs_numpy")
    shape = bench.SHAPES["tutorial-1k"].with_batch(128)
    result = script.measure(shape, "float64", rounds=2, seconds=0.01, backends=("numpy",))
    median, slowest, fastest = result["numpy"]
    assert 0 < slowest <= median <= fastest
    apart = script.row("tutorial-1k", "float32", {"numpy": (1.0, 0.9, 1.1), "numba": (6, 5, 7)})
    assert apart.split()[-2:] == ["6.00x", "5.00x"]
    close = script.row("mlp256-1024", "float32", {"numpy": (1, 0.8, 1.2), "numba": (1.1, 1, 1.3)})
    assert "~" in close and close.endswith("(below target)")


def test_numba_vs_numpy_rejects_bad_options(capsys):
    parse = _script("numba_vs_numpy").parse
    for argv, message in (
        (["--cases", "XL"], "unknown case 'XL'"),
        (["--dtypes", "float16"], "unknown dtype 'float16'"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ):
        with pytest.raises(SystemExit):
            parse(argv)
        assert message in capsys.readouterr().err
    args = parse(["--quick", "--cases", "tutorial-1k"])
    assert (args.rounds, args.seconds, args.cases, args.dtypes) == (
        3, 0.2, ["tutorial-1k"], ["float32", "float64"]
    )  # fmt: skip


def test_gpu_stream_runs_on_the_cpu(tmp_path, capsys):
    """gpu_stream on numpy: both ways of copying train the same weights; the table is removed."""
    argv = ["--backend", "numpy", "--rows", "600", "--features", "6", "--batch", "200"]
    assert (
        _script("gpu_stream").main(
            [*argv, "--rounds", "2", "--hidden", "8", "--dir", str(tmp_path)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "600 rows x 7 float32" in out and "layers 6-8-10" in out
    assert "overlapped median" in out and "generic    median" in out
    assert out.rstrip().endswith("largest weight difference between the two: 0")
    assert list(tmp_path.iterdir()) == []
