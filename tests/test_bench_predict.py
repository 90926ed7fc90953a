"""The inference rows of the bench (``mlp_accel.bench.predict``): tiny runs, their table,
JSON and options; the peers' probabilities against the library's."""

from __future__ import annotations

import contextlib
import importlib.util
import json

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import bench
from mlp_accel.bench import predict
from mlp_accel.bench.cases import network_shape
from mlp_accel.bench.predict_peers import PREDICTORS, PeerUnavailable
from mlp_accel.cli import main

TINY = dict(
    backends=["numpy"],
    networks=[network_shape([6, 16, 3], 32)],
    dtypes=("float32",),
    quick=True,
    predict_only=True,
    predict_batch_sizes=[1, 5],
    threads=1,
)


@pytest.fixture(scope="module")
def report() -> dict:
    return bench.run_bench(bench.BenchConfig(**TINY))


def test_predict_rows(report):
    assert report["rows"] == [] and report["sweep"] == [] and report["gemm"] == []
    rows = report["predict"]
    assert {(r["network"], r["batch"]) for r in rows} == {("6-16-3", 1), ("6-16-3", 5)}
    numpy_rows = [r for r in rows if r["impl"] == "numpy"]
    assert [r["threads"] for r in numpy_rows] == [1, 1]  # batch 1: one thread; --threads 1
    for row in rows:
        assert row["samples_per_sec"] > 0 and row["rounds"] >= 3
        low, high = row["samples_per_sec_range"]
        assert low <= row["samples_per_sec"] <= high
        assert row["max_abs_diff"] <= 1e-4
    impls = {r["impl"] for r in rows}
    assert "sklearn" in impls  # a test dependency
    # the others run where installed, else they are skipped with the reason
    skipped = {s["what"] for s in report["skipped"]}
    for peer in ("onnxruntime", "torch-cpu"):
        assert (peer in impls) != (peer in skipped)
    if "onnxruntime" in impls:
        row = next(r for r in rows if r["impl"] == "numpy")
        assert row["ratio_to_onnxruntime"] > 0
    assert report["config"]["predict_only"] is True
    json.dumps(report)


def test_predict_table_and_markdown(report):
    table = bench.format_table(report)
    assert "predict_proba samples/s (float32)" in table
    assert "6-16-3" in table and "sklearn (peer)" in table and "vs onnxruntime" in table
    assert "train/s" not in table  # --predict-only: no training table
    markdown = bench.format_markdown(report)
    assert "| network | batch | threads | numpy |" in markdown


def test_batches_networks_and_threads_of_a_run():
    assert predict.predict_batches(bench.BenchConfig()) == [1, 64, 65_536]
    assert predict.predict_batches(bench.BenchConfig(quick=True)) == [1, 64]
    assert predict.predict_batches(bench.BenchConfig(predict_batch_sizes=[7])) == [7]
    default = predict.predict_networks(bench.BenchConfig())
    assert [s.layers for s in default] == [(64, 256, 256, 10), (784, 1024, 1024, 10)]
    named = predict.predict_networks(bench.BenchConfig(shapes=["tutorial-1k", "tutorial-100k"]))
    assert [s.family for s in named] == ["tutorial"]
    assert predict.predict_threads(1) == 1
    assert predict.predict_threads(64) == ma.usable_cpus()
    assert predict.predict_threads(64, limit=1) == 1


def test_bad_predict_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="predict batch sizes"):
        bench.BenchConfig(predict_batch_sizes=[0]).validate()


@pytest.mark.parametrize(
    "layers, activations",
    [([5, 12, 4], ["relu", "softmax"]), ([5, 12, 1], ["tanh", "sigmoid"])],
)
@pytest.mark.parametrize("peer", list(PREDICTORS))
def test_each_peer_predicts_the_models_probabilities(peer, layers, activations):
    model = ma.MLP(layers, activations, backend="numpy", seed=0)
    X = np.random.default_rng(0).standard_normal((9, layers[0])).astype("float32")
    with contextlib.ExitStack() as restore:
        try:
            call = PREDICTORS[peer](model, X, 1, restore)
        except PeerUnavailable as exc:
            pytest.skip(str(exc))
        out = call()
    out = out[:, 1:] if out.shape[1] == layers[-1] + 1 else out
    np.testing.assert_allclose(out, model.predict_proba(X), atol=1e-5)


def test_a_missing_exporter_or_runtime_is_a_reason():
    model = ma.MLP([3, 4, 2], backend="numpy", seed=0)
    X = np.zeros((2, 3), dtype="float32")
    have = all(importlib.util.find_spec(m) for m in ("mlp_accel.export", "onnx", "onnxruntime"))
    if have:
        pytest.skip("the exporter, onnx and onnxruntime are all installed here")
    with contextlib.ExitStack() as restore, pytest.raises(PeerUnavailable):
        PREDICTORS["onnxruntime"](model, X, 1, restore)


def test_a_regressor_has_no_peer_probabilities():
    model = ma.MLP([3, 4, 2], ["relu", "identity"], "squared_error", backend="numpy")
    with contextlib.ExitStack() as restore, pytest.raises(PeerUnavailable, match="classifier"):
        PREDICTORS["sklearn"](model, np.zeros((1, 3), "float32"), 1, restore)


def test_cli_predict_only(tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["bench", "--backends", "numpy", "--layers", "4,8,2", "--predict-only", "--quick"]
    args += ["--predict-batches", "1,3", "--no-peers", "--threads", "1", "--quiet"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predict_proba samples/s" in printed
    data = json.loads(out.read_text())
    assert {r["batch"] for r in data["predict"]} == {1, 3}
    assert {r["impl"] for r in data["predict"]} == {"numpy"}


def test_cli_no_predict_and_bad_batches(capsys):
    args = ["bench", "--backends", "numpy", "--layers", "4,8,2", "--quick", "--no-peers"]
    assert main([*args, "--no-predict", "--threads", "1", "--quiet"]) == 0
    assert "predict_proba" not in capsys.readouterr().out
    assert main([*args, "--predict-batches", "0", "--quiet"]) == 1  # as --sweep-batches 0
    assert "predict batch sizes" in capsys.readouterr().err
