"""What the Numba backend's kernels depend on that may be asked without importing Numba:
the widest layer of the fused kernel and where generated kernels are cached.

``backend="auto"`` reads both for its cost model; importing Numba there would cost the
half second the model is trying to avoid.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_WIDTH", "cache_dir_candidate"]

#: Widest layer the fused small-network kernel is generated for.
MAX_WIDTH = 64


def cache_dir_candidate() -> Path:
    """Where generated kernel modules (and Numba's cache of them) go, before any fallback:
    ``$MLP_ACCEL_CACHE_DIR``, else ``$NUMBA_CACHE_DIR/mlp_accel``, else
    ``$XDG_CACHE_HOME/mlp_accel/numba`` (``~/.cache`` by default). Nothing is created."""
    if os.environ.get("MLP_ACCEL_CACHE_DIR"):
        return Path(os.environ["MLP_ACCEL_CACHE_DIR"])
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "mlp_accel"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlp_accel" / "numba"
