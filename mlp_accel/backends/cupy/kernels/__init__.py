"""CUDA C sources of the CuPy backend's fused kernels, generated per dtype (and shape).

Nothing here imports CuPy: the functions return ``(source, kernel_name)`` pairs that
:class:`~mlp_accel.backends.cupy_backend.CupyBackend` compiles with ``cupy.RawKernel`` (NVRTC)
on first use. Keeping the sources plain strings lets the test suite compile them with ``nvcc``
and run them in a CPU emulator on machines without a GPU.

Every kernel is written for a 1-D or (32, 8) block, loops grid-stride so any grid size is
correct, and reduces deterministically (per-block partial sums, then
:func:`sum_segments_source`) so a seed gives the same bits run after run; no atomics.

The activations and losses are rendered from the rows of :mod:`mlp_accel.ops.table`, the
expressions the ``xp`` reference evaluates, operation for operation, so float64 results agree
with NumPy to rounding. Softmax and cross-entropy (not elementwise) are written by hand.

The sources live in four modules: :mod:`.common` (launch shapes, the preamble every source
starts with), :mod:`.layers` (the per-layer hooks and the reductions), :mod:`.optimizers`
(multi-tensor SGD and Adam) and :mod:`.network` (the fused whole-network kernels).
"""

from __future__ import annotations

# The package's face is its modules' public names: each module's ``__all__`` says what it
# offers, and this one adds them up rather than list them again.
from ....ops.layout import n_parameters
from . import layers, network, optimizers
from .common import (
    BLOCK,
    COLSUM_BLOCK,
    ELEMENTWISE_ACTIVATIONS,
    MAX_SOFTMAX_WIDTH,
    is_elementwise,
    preamble,
)
from .layers import *  # noqa: F403
from .network import *  # noqa: F403
from .optimizers import *  # noqa: F403

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "BLOCK",
    "COLSUM_BLOCK",
    "MAX_SOFTMAX_WIDTH",
    "preamble",
    "is_elementwise",
    "n_parameters",
    *layers.__all__,
    *optimizers.__all__,
    *network.__all__,
]
