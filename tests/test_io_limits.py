"""Crafted model files that declare more than they should: nothing big is read or allocated.

Files stay a few KB: members of zeros compress about 1000:1, so a member of modest real size
stands for a large one, and the peak of Python's allocations (tracemalloc, which sees NumPy's
buffers) shows whether it was inflated.
"""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import io

_ZEROS = 8_000_000  # bytes in a crafted member; the peak of a load that skips it is far less


def _saved(tmp_path, name="m.npz"):
    path = tmp_path / name
    ma.MLP([3, 5, 2], ["tanh", "softmax"], "cross_entropy", backend="numpy", seed=0).save(path)
    return path


def _add_zeros(path, member, shape=(_ZEROS // 8,)):
    """Append a deflated ``.npy`` member of float64 zeros declaring ``shape``."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(member + ".npy", "w") as f:
            header = {"descr": "<f8", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
            f.write(bytes(8 * int(np.prod(shape))))
    return path


@pytest.fixture
def peak(tmp_path_factory):
    """``peak(call)``: the call's result and the peak of the allocations it made."""
    ma.load(_saved(tmp_path_factory.mktemp("warm")))  # imports and caches are not measured

    def measure(call):
        tracemalloc.start()
        try:
            return call(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    return measure


def test_unused_members_are_never_inflated(tmp_path, peak):
    path = _add_zeros(_add_zeros(_saved(tmp_path), "junk"), "extra__unused")
    assert path.stat().st_size < 100_000
    model, most = peak(lambda: ma.load(path, backend="numpy"))
    assert model.layers == (3, 5, 2) and most < _ZEROS / 4
    meta, most = peak(lambda: io.load_metadata(path))
    assert meta == {} and most < _ZEROS / 4
    # the extras are what load_extras is for: it reads them, and only them
    extras = io.load_extras(path)
    assert list(extras) == ["unused"] and extras["unused"].nbytes == _ZEROS


def test_weight_declaring_another_shape_is_refused_before_inflating(tmp_path, peak):
    path = _saved(tmp_path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "W1"}
    np.savez(path, **arrays)
    _add_zeros(path, "W1", shape=(1000, 1000))  # honest about its size, but not a 3x5 weight

    def load():
        with pytest.raises(ValueError, match=r"W1 has shape \(1000, 1000\), expected \(3, 5\)"):
            ma.load(path, backend="numpy")

    _, most = peak(load)
    assert most < _ZEROS / 4


def test_oversized_metadata_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_MAX_META_BYTES", 1_000_000)  # the real limit is 64 MiB
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("__meta__.npy", "w") as f:
            header = {"descr": "|u1", "fortran_order": False, "shape": (2_000_000,)}
            np.lib.format.write_array_header_1_0(f, header)
            f.write(bytes(2_000_000))
    with pytest.raises(ValueError, match=rf"{path}.*'__meta__' declares \d+ bytes"):
        ma.load(path)


# -- crafted files whose errors did not name the file (issue 20, item 15) -----------------------
def _parts(path):
    with np.load(path) as npz:
        arrays = dict(npz)
    return json.loads(arrays.pop("__meta__").tobytes().decode()), arrays


def _write(path, meta, arrays, raw_meta=None):
    raw = raw_meta if raw_meta is not None else json.dumps(meta).encode()
    np.savez(path, __meta__=np.frombuffer(raw, dtype=np.uint8), **arrays)
    return path


def _refused(path, match, load=ma.load):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_layer_width_of_5000_digits_is_refused_naming_the_file(tmp_path):
    meta, arrays = _parts(_saved(tmp_path))
    raw = json.dumps(meta).replace("[3, 5, 2]", f"[3, {'9' * 5000}, 2]").encode()
    _refused(_write(tmp_path / "digits.npz", None, arrays, raw_meta=raw), "more than 4300 digits")


def _checkpoint(tmp_path, seed=0, dtype="float64", name="ck.npz"):
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = ma.MLP([3, 5, 2], backend="numpy", dtype=dtype, seed=seed)
    path = tmp_path / name
    ma.fit(model, X, np.arange(20) % 2, epochs=2, batch_size=8, checkpoint=path)
    return path, X


def test_weights_beyond_the_models_dtype_are_refused_naming_the_member(tmp_path):
    meta, arrays = _parts(_saved(tmp_path))
    meta["dtype"] = "float32"
    arrays["W2"] = np.full((5, 2), 1e300)  # float64, finite; inf once cast to float32
    _refused(_write(tmp_path / "w.npz", meta, arrays), r"W2 holds 1e\+300, beyond .* float32")
    meta["dtype"] = "float64"
    assert ma.load(_write(tmp_path / "ok.npz", meta, arrays)).get_weights()[2][0, 0] == 1e300
    meta, arrays = _parts(_checkpoint(tmp_path, dtype="float32")[0])
    arrays["extra__opt__m0"] = np.full((3, 5), -1e300)
    path = _write(tmp_path / "ck32.npz", meta, arrays)
    _refused(path, r"optimizer m0 holds 1e\+300", load=io.load_checkpoint)


def test_checkpoint_with_a_generator_no_checkpoint_can_hold_is_refused(tmp_path):
    # Before: loaded, then resume failed with "state must be for a PCG64 RNG".
    path, X = _checkpoint(tmp_path)
    meta, arrays = _parts(path)
    state = np.random.MT19937(0).state
    state["state"]["key"] = state["state"]["key"].tolist()
    meta["user"]["checkpoint"]["rng_state"] = state
    crafted = _write(tmp_path / "mt.npz", meta, arrays)
    _refused(crafted, "rng_state is not the state of a PCG64 or PCG64DXSM", io.load_checkpoint)
    with pytest.raises(ValueError, match=f"{crafted}: rng_state"):
        ma.fit(
            ma.MLP([3, 5, 2], backend="numpy", seed=0), X, np.arange(20) % 2, resume_from=crafted
        )


def test_checkpoint_resumes_with_its_own_kind_of_generator(tmp_path):
    # Before: a PCG64DXSM model's checkpoint loaded, then resuming into a default model failed.
    seed = np.random.Generator(np.random.PCG64DXSM(3))
    path, X = _checkpoint(tmp_path, seed=seed)
    y = np.arange(20) % 2
    resumed = ma.MLP([3, 5, 2], backend="numpy", dtype="float64", seed=0)
    ma.fit(resumed, X, y, epochs=3, batch_size=8, resume_from=path)
    assert isinstance(resumed.rng.bit_generator, np.random.PCG64DXSM)
    dxsm = np.random.Generator(np.random.PCG64DXSM(3))
    straight = ma.MLP([3, 5, 2], backend="numpy", dtype="float64", seed=dxsm)
    ma.fit(straight, X, y, epochs=3, batch_size=8)
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
