"""Save/load round trip, atomic saves, refusal of pickles and foreign files."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import io


def _model(backend="numpy", dtype="float64"):
    return ma.MLP(
        [3, 5, 2], ["tanh", "softmax"], "cross_entropy", backend=backend, dtype=dtype, seed=7
    )


def test_round_trip_on_every_backend(backend_name, tmp_path):
    model = _model(backend_name)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = ma.load(path, backend=backend_name)
    assert loaded.layers == model.layers
    assert loaded.activations == model.activations
    assert loaded.loss == model.loss and loaded.dtype == model.dtype
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_extras_round_trip(tmp_path):
    path = tmp_path / "m.npz"
    io.save(_model(), path, extras={"classes": np.array([3, 7]), "x_mean": np.ones(3)})
    extras = io.load_extras(path)
    np.testing.assert_array_equal(extras["classes"], [3, 7])
    np.testing.assert_array_equal(extras["x_mean"], np.ones(3))


def test_failed_save_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    first = _model()
    first.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        _model().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


def test_pickled_payload_is_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    with zipfile.ZipFile(evil, "w") as zf:
        with zf.open("__meta__.npy", "w") as f:
            np.save(f, np.array([{"format": "mlp_accel.model"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        ma.load(evil)
    raw = tmp_path / "raw.npy"
    raw.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ValueError):
        ma.load(raw)


def test_truncated_and_foreign_files_get_clear_errors(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not"):
        ma.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="not an mlp_accel model"):
        ma.load(foreign)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError):
        ma.load(text)
    with pytest.raises(FileNotFoundError):
        ma.load(tmp_path / "missing.npz")


def test_weights_that_do_not_fit_the_metadata_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["W1"] = np.zeros((4, 4))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="W1"):
        ma.load(bad)
