"""Save/load round trip, atomic saves, refusal of pickles and foreign files."""

from __future__ import annotations

import json
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


def _save(tmp_path):
    path = tmp_path / "saved.npz"
    _model().save(path)
    return path


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


# -- crafted files: one ValueError naming the file and the problem -----------------------------
def _arrays(path):
    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return meta, arrays


def _write(path, meta, arrays, raw_meta=None):
    raw = raw_meta if raw_meta is not None else json.dumps(meta).encode()
    np.savez(path, __meta__=np.frombuffer(raw, dtype=np.uint8), **arrays)
    return path


def _checkpoint(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    model = _model()
    path = tmp_path / "ck.npz"
    ma.fit(model, X, y, epochs=2, batch_size=8, optimizer=ma.optim.Adam(1e-2), checkpoint=path)
    return path


def _refused(path, match, load=ma.load):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)
    return info.value


def test_huge_layer_width_in_metadata_is_refused_before_allocating(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    meta["layers"] = [3, 1e12, 2]
    _refused(_write(tmp_path / "float.npz", meta, arrays), "layers")
    meta["layers"] = [3, 10**12, 2]  # a true integer: the stored W1 cannot hold it
    _refused(_write(tmp_path / "int.npz", meta, arrays), "W1 has shape")


def test_member_header_declaring_more_than_it_holds_is_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    path = _write(tmp_path / "m.npz", meta, {k: v for k, v in arrays.items() if k != "W1"})
    with zipfile.ZipFile(path, "a") as zf, zf.open("W1.npy", "w") as f:
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**7)}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(np.zeros(15).tobytes())
    _refused(path, "W1.*declares shape")


def test_compressed_member_lying_about_its_size_is_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    path = tmp_path / "m.npz"
    np.savez_compressed(path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    assert ma.load(path, backend="numpy").layers == (3, 5, 2)  # honest compression is fine
    data = bytearray(path.read_bytes())
    # Patch the central directory's uncompressed size of the first member to 2 GB.
    first = data.index(b"PK\x01\x02")
    data[first + 24 : first + 28] = (2**31).to_bytes(4, "little")
    lying = tmp_path / "lying.npz"
    lying.write_bytes(bytes(data))
    _refused(lying, "declares more data")


def test_deeply_nested_metadata_is_refused(tmp_path):
    _, arrays = _arrays(_save(tmp_path))
    raw = b"[" * 100_000 + b"]" * 100_000
    _refused(_write(tmp_path / "deep.npz", None, arrays, raw_meta=raw), "nested too deeply")


def test_complex_weights_are_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    arrays["W1"] = arrays["W1"] + 1j
    _refused(_write(tmp_path / "c.npz", meta, arrays), "W1 has dtype complex128")


def test_non_finite_weights_in_a_file_are_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    arrays["b2"] = np.array([0.0, np.inf])
    _refused(_write(tmp_path / "inf.npz", meta, arrays), "b2 contains NaN or inf")


def test_missing_weight_is_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    del arrays["W2"]
    path = _write(tmp_path / "m.npz", meta, arrays)
    _refused(path, "missing W2")


def test_bad_metadata_types_are_refused(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    for key, value, match in [
        ("layers", "3,5,2", "layers"),
        ("activations", "tanh", "activations"),
        ("dtype", "float16", "float32 or float64"),
        ("loss", None, "loss"),
        ("user", [1], "user metadata"),
    ]:
        bad = dict(meta, **{key: value})
        _refused(_write(tmp_path / f"{key}.npz", bad, arrays), match)


def _tampered_checkpoint(tmp_path, name, edit_meta=None, edit_arrays=None):
    meta, arrays = _arrays(_checkpoint(tmp_path))
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    return _write(tmp_path / name, meta, arrays)


def test_valid_checkpoint_loads_and_resumes(tmp_path):
    ck = io.load_checkpoint(_checkpoint(tmp_path))
    assert ck["state"]["epoch"] == 2 and ck["optimizer"]["t"] == 6
    assert sorted(ck["optimizer"]["arrays"]) == [f"{n}{i}" for n in "mv" for i in range(4)]


@pytest.mark.parametrize(
    "name, edit_meta, edit_arrays, match",
    [
        ("history", lambda m: m["user"]["checkpoint"].update(history=[1, 2]), None, "history"),
        ("t", lambda m: m["user"]["optimizer"].update(t=-5), None, "t=-5"),
        ("lr", lambda m: m["user"]["checkpoint"].update(base_lr=float("nan")), None, "base_lr"),
        (
            "hyper",
            lambda m: m["user"]["optimizer"]["hyperparameters"].update(lr=float("nan")),
            None,
            "hyperparameters",
        ),
        ("rng", lambda m: m["user"]["checkpoint"].pop("rng_state"), None, "missing rng_state"),
        (
            "rng_bad",
            lambda m: m["user"]["checkpoint"]["rng_state"].update(state=5),
            None,
            "rng_state",
        ),
        ("epoch", lambda m: m["user"]["checkpoint"].update(epoch=1.5), None, "epoch"),
        ("opt_name", lambda m: m["user"]["optimizer"].update(name="lbfgs"), None, "optimizer"),
        ("W2", None, lambda a: a.pop("W2"), "missing W2"),
        ("m_nan", None, lambda a: a["extra__opt__m0"].fill(np.nan), "m0 contains NaN"),
        ("v_neg", None, lambda a: a["extra__opt__v1"].fill(-1.0), "v1.*negative"),
        ("m_shape", None, lambda a: a.update(extra__opt__m0=np.zeros(2)), "m0 has shape"),
        ("m_gone", None, lambda a: a.pop("extra__opt__m3"), "incomplete"),
        ("extra", None, lambda a: a.update(extra__opt__velocity0=np.zeros(3)), "unexpected"),
    ],
)
def test_malformed_checkpoint_is_refused(tmp_path, name, edit_meta, edit_arrays, match):
    path = _tampered_checkpoint(tmp_path, f"{name}.npz", edit_meta, edit_arrays)
    _refused(path, match, load=io.load_checkpoint)
    # and training refuses it the same way, before touching the model
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        ma.fit(model, np.zeros((4, 3)), np.zeros(4, dtype=int), epochs=3, resume_from=path)
    np.testing.assert_array_equal(model.get_weights()[0], before[0])


# -- what save refuses -------------------------------------------------------------------------
def test_non_finite_weights_are_never_saved(tmp_path):
    model = _model()
    weights = model.get_weights()
    weights[1][0] = np.nan
    model.set_params([model.backend.asarray(w, model.dtype) for w in weights])
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=f"refusing to save {path}: b1 contains NaN"):
        model.save(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_checkpoint_with_non_finite_optimizer_state_is_not_saved(tmp_path):
    model = _model()
    opt = ma.optim.Adam(1e-2)
    ma.fit(model, np.ones((4, 3)), np.zeros(4, dtype=int), epochs=1, optimizer=opt)
    opt.m[0][0, 0] = np.inf
    path = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match=r"refusing to save .*optimizer m0"):
        io.save_checkpoint(path, model, opt, {"epoch": 1})
    assert not path.exists()


# -- which file it is --------------------------------------------------------------------------
def test_csv_given_as_a_model_is_not_called_pickled(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,c\n1,2,3\n")
    err = _refused(csv, "not an mlp_accel model file: it is a text file")
    assert "pickle" not in str(err)


def test_npy_given_as_a_model_is_named_as_such(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((2, 3)))
    _refused(npy, "not an mlp_accel model file: it is a single NumPy array")


def test_empty_and_binary_files_are_named(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    _refused(tmp_path / "empty.npz", "it is empty")
    (tmp_path / "bin.npz").write_bytes(bytes(range(256)))
    _refused(tmp_path / "bin.npz", "unknown format")


# -- which backend load uses -------------------------------------------------------------------
def test_load_uses_the_backend_it_was_saved_from(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.delenv("MLP_ACCEL_BACKEND", raising=False)
    path = _save(tmp_path)  # from numpy; "auto" would pick numba or cupy here
    assert ma.load(path).backend.name == "numpy"
    assert ma.load(path, backend="numba").backend.name == "numba"
    ma.MLP([3, 2], backend="numba", seed=0).save(tmp_path / "nb.npz")
    assert ma.load(tmp_path / "nb.npz").backend.name == "numba"


def test_load_falls_back_to_auto_when_the_saved_backend_is_unknown_here(tmp_path):
    meta, arrays = _arrays(_save(tmp_path))
    meta["backend"] = "tpu"
    auto = ma.backends.get_backend("auto").name
    assert ma.load(_write(tmp_path / "tpu.npz", meta, arrays)).backend.name == auto
    del meta["backend"]  # a file from before the backend was recorded
    assert ma.load(_write(tmp_path / "old.npz", meta, arrays)).backend.name == auto


# -- parameter names: one rule, in ops/layout ------------------------------------------------------
def test_param_name_is_the_layouts_name():
    from mlp_accel.ops.layout import param_layout, param_name

    slots = param_layout([4, 6, 5, 3, 2])
    assert [slot.name for slot in slots] == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    assert [param_name(i) for i in range(len(slots))] == [slot.name for slot in slots]
    assert param_name(np.int64(21)) == "b11"
    with pytest.raises(ValueError, match="parameter index must be >= 0, got -1"):
        param_name(-1)
    with pytest.raises(TypeError):
        param_name(1.0)


def test_files_and_errors_name_parameters_as_the_layout_does(tmp_path):
    from mlp_accel.ops.layout import param_layout

    model = ma.MLP([3, 4, 4, 2], backend="numpy", dtype="float64", seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {name.removesuffix(".npy") for name in zf.namelist()}
    names = [slot.name for slot in param_layout(model.layers)]
    assert set(names) <= members
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"^b3 has shape \(3,\), expected \(2,\)$"):
        model.set_weights([*weights[:-1], np.zeros(3)])
    with pytest.raises(ValueError, match=r"^W2 contains NaN$"):
        model.set_weights([weights[0], weights[1], np.full((4, 4), np.nan), *weights[3:]])
    with pytest.raises(TypeError, match=r"^b1 must be numeric, got dtype <U1$"):
        model.set_weights([weights[0], np.array(["a"] * 4), *weights[2:]])


def test_io_and_validation_take_parameter_names_from_the_layout():
    """io.py and _validation.py hold no rule of their own for the names (``i % 2``, ``i // 2``)."""
    import ast
    from pathlib import Path

    import mlp_accel

    package = Path(mlp_accel.__file__).parent
    for module in ("io.py", "_validation.py"):
        tree = ast.parse((package / module).read_text(encoding="utf-8"))
        halves = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.BinOp)
            and isinstance(node.op, (ast.Mod, ast.FloorDiv))
            and isinstance(node.right, ast.Constant)
            and node.right.value == 2
        ]
        assert halves == [], f"{module} derives parameter names at lines {halves}"
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "ops.layout"
            for alias in node.names
        }
        assert imported & {"param_name", "param_layout"}, module
