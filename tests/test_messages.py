"""Library calls given NumPy scalars or wrong types: accepted, or refused by name (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.backends import _threads


def test_set_threads_takes_numpy_integers_and_refuses_bools_and_floats():
    previous = ma.set_threads(np.int64(1))  # before: refused as not a positive integer
    try:
        assert _threads.pinned_threads() == 1 and type(_threads.pinned_threads()) is int
        ma.set_threads(np.uint8(2))
        assert _threads.pinned_threads() == 2
        for bad in (np.True_, True, 1.0, np.float64(1.0), "1"):
            with pytest.raises(TypeError, match="threads must be a positive integer"):
                ma.set_threads(bad)
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            ma.set_threads(np.int64(0))
    finally:
        ma.set_threads(previous)
