"""The command line with bad model files and odd output paths: one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import mlp_accel as ma


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlp_accel", *args], capture_output=True, text=True, timeout=300
    )


def _features(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    return path


def _one_line_error(result, *expected):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_csv_as_model_says_what_it_is(tmp_path):
    data = _features(tmp_path)
    result = run_cli("predict", "--model", str(data), "--data", str(data), "--backend", "numpy")
    line = _one_line_error(result, str(data), "not an mlp_accel model file", "text file")
    assert "pickle" not in line


def test_npy_as_model_says_what_it_is(tmp_path):
    npy = tmp_path / "weights.npy"
    np.save(npy, np.ones((3, 3)))
    result = run_cli(
        "predict", "--model", str(npy), "--data", str(_features(tmp_path)), "--backend", "numpy"
    )
    _one_line_error(result, str(npy), "single NumPy array")


def test_resume_from_malformed_checkpoint_is_one_line(tmp_path):
    ck = tmp_path / "ck.npz"
    model = ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(8, 3))
    ma.fit(model, X, np.arange(8) % 2, epochs=1, checkpoint=ck)
    with np.load(ck) as npz:
        arrays = dict(npz)
    del arrays["W2"]
    np.savez(ck, **arrays)
    result = run_cli(
        "train", "--resume", str(ck), "--epochs", "2", "--no-progress", "--backend", "numpy"
    )
    _one_line_error(result, str(ck))


def test_predict_out_writes_through_a_symlink(tmp_path):
    model_path = tmp_path / "m.npz"
    ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0).save(model_path)
    target = tmp_path / "predictions.csv"
    link = tmp_path / "latest.csv"
    link.symlink_to(target.name)
    result = run_cli(
        "predict",
        "--model",
        str(model_path),
        "--data",
        str(_features(tmp_path)),
        "--backend",
        "numpy",
        "--out",
        str(link),
    )
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and len(target.read_text().splitlines()) == 1 + 2  # header, rows
