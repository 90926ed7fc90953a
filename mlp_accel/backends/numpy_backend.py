"""The NumPy backend: the generic hooks on ``array_api_compat.numpy``."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .base import Backend

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """Runs the generic array-API code on NumPy, on the host CPU."""

    name = "numpy"
    xp = xp_numpy
    device = "cpu"

    def asarray(self, x: Any, dtype: str) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def describe(self) -> dict[str, str]:
        from threadpoolctl import threadpool_info

        blas = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        return {"device": "cpu", "numpy": np.__version__, "blas": "; ".join(blas) or "unknown"}
