"""The CuPy backend's ``optimizer_update``: the rules of the optimizer table as multi-tensor
CUDA kernels (:mod:`.kernels.optimizers`), in place.

An elementwise rule is one launch per group of tensors. A layer-wise rule (LARS, LAMB) is
three: the first pass (state update and per-block float64 sums of ``p * p`` and ``u * u``,
one row of blocks per tensor), the segment sums of those partial sums (a fixed order: the
blocks per tensor depend on the sizes alone), and the second pass, whose step scalar each
thread computes from its tensor's two sums. Nothing goes back to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.optimizers import OptimizerRow
from . import kernels as _kernels
from .launch import _MAX_TENSORS_PER_LAUNCH, Launcher

__all__ = ["table_update"]

Array = Any


def table_update(
    launch: Launcher,
    cp: Any,
    row: OptimizerRow,
    lists: tuple[list[Array], ...],
    scalars: tuple[float, ...],
    tensor_scalars: list[tuple[float, ...]],
) -> None:
    """Run ``row`` in place over ``lists`` (``params``, ``grads``, then the state lists), in
    groups of at most ``_MAX_TENSORS_PER_LAUNCH`` tensors; scalars in the arrays' dtype."""
    dtype = lists[0][0].dtype.name
    real = lists[0][0].dtype.type
    step = tuple(real(x) for x in scalars)
    n = len(lists[0])
    for start in range(0, n, _MAX_TENSORS_PER_LAUNCH):
        group = range(start, min(n, start + _MAX_TENSORS_PER_LAUNCH))
        sizes = tuple(int(lists[0][i].size) for i in group)
        args: list[Any] = []
        for i in group:
            args += [lst[i] for lst in lists]
            args += [real(x) for x in tensor_scalars[i]]
        total = launch.blocks(sum(sizes))
        if not row.layerwise:
            kernel = launch.kernel(
                ("table", row.name, sizes, dtype),
                lambda s=sizes: _kernels.table_update_source(row.name, s, dtype),
            )
            kernel((total,), (_kernels.BLOCK,), (*args, *step))
            continue
        first = launch.kernel(
            ("table_first", row.name, sizes, dtype),
            lambda s=sizes: _kernels.table_first_source(row.name, s, dtype),
        )
        second = launch.kernel(
            ("table_second", row.name, sizes, dtype),
            lambda s=sizes: _kernels.table_second_source(row.name, s, dtype),
        )
        blocks = _kernels.first_pass_blocks(sizes)
        partial = cp.empty(2 * len(sizes) * blocks, dtype=np.float64)
        sums = cp.empty(2 * len(sizes), dtype=np.float64)
        first((blocks, len(sizes)), (_kernels.BLOCK,), (*args, *step, partial))
        launch.sum_segments(partial, sums, 2 * len(sizes), blocks)
        second((total,), (_kernels.BLOCK,), (*args, *step, sums))
