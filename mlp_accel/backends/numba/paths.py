"""What the Numba backend's kernels depend on that may be asked without importing Numba:
which networks get which fused kernel, and where generated kernels are cached.

``backend="auto"`` reads both for its cost model; importing Numba there would cost the
half second the model is trying to avoid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_WIDTH",
    "UNROLL_LIMIT",
    "fused_supports",
    "unrolled",
    "cache_dir_candidate",
    "generic_title",
    "generic_key",
]

#: Widest layer the fused small-network kernel is generated for.
MAX_WIDTH = 64
#: Networks with at most this many weights are unrolled into scalar code per sample
#: (:mod:`.unrolled`): only these get a kernel specialized on their shape.
UNROLL_LIMIT = 128


def fused_supports(spec: Any) -> bool:
    """Whether a fused kernel can be generated for ``spec`` (any rows of the math table)."""
    from ...ops.table import ACTIVATION_ROWS, LOSS_ROWS

    if spec.dtype not in ("float32", "float64") or spec.loss not in LOSS_ROWS:
        return False
    if len(spec.widths) < 2 or any(not 1 <= w <= MAX_WIDTH for w in spec.widths):
        return False
    if len(spec.activations) != len(spec.widths) - 1:
        return False
    if any(a not in ACTIVATION_ROWS for a in spec.activations):
        return False
    *hidden, output = spec.activations
    if any(not ACTIVATION_ROWS[a].elementwise for a in hidden):
        return False
    required = LOSS_ROWS[spec.loss].requires
    return required is None or required == output


def unrolled(spec: Any) -> bool:
    """Whether ``spec`` is small enough for the unrolled per-sample kernel."""
    d = spec.widths
    return sum(d[k] * d[k + 1] for k in range(len(d) - 1)) <= UNROLL_LIMIT


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


def generic_title(dtype: str, activations: tuple[str, ...], loss: str, output: str) -> str:
    """What a generated generic network module names itself in its first line (the generator
    writes it; ``backend="auto"`` looks for it on disk without importing Numba)."""
    return f"the generic {dtype} network kernel of {list(activations)}, {loss} + {output}"


def generic_key(spec: Any) -> tuple[str, tuple[str, ...], str, str]:
    """What the generic kernel of ``spec`` is compiled for: ``(dtype, activations, loss,
    output activation)``.

    ``activations`` is the sorted set of the network's activations plus the identity, the
    same set as the per-layer compile task of the spec, so that networks which differ only
    in widths, depth or the order of their hidden activations share one compiled kernel.
    """
    names = sorted({*spec.activations, "identity"})
    return spec.dtype, tuple(names), spec.loss, spec.activations[-1]
