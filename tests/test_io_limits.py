"""Crafted model files that declare more than they should: nothing big is read or allocated.

Files stay a few KB: members of zeros compress about 1000:1, so a member of modest real size
stands for a large one, and the peak of Python's allocations (tracemalloc, which sees NumPy's
buffers) shows whether it was inflated.
"""

from __future__ import annotations

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
