"""Compiling and launching the CuPy backend's kernels: the ``RawKernel`` cache, grid sizes,
the two-launch reductions, the multi-tensor optimizer launches, and the layout checks every
fused hook makes before it takes its fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import kernels as _kernels

__all__ = ["Launcher", "ceil_div", "c_contiguous", "fusable", "updatable"]

Array = Any

# Tensors per launch of the multi-tensor optimizer kernels (each adds 2-4 pointer arguments;
# CUDA allows 4 KiB of kernel arguments on every architecture).
_MAX_TENSORS_PER_LAUNCH = 64


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers, without floats."""
    return -(-a // b)


def c_contiguous(x: Any) -> bool:
    """Whether ``x`` is C-contiguous."""
    # CuPy keeps the flag as an attribute; reading it builds no Flags object (this runs for
    # every array of every hook call).
    flag = getattr(x, "_c_contiguous", None)
    return bool(x.flags.c_contiguous) if flag is None else bool(flag)


def fusable(*arrays: Array) -> bool:
    """Same float32/float64 dtype and C-contiguous: what the fused kernels assume."""
    dtype = arrays[0].dtype
    if dtype.char not in "fd":
        return False
    return all(a.dtype == dtype and c_contiguous(a) for a in arrays)


def updatable(ndarray: type, *lists: list[Array] | None) -> bool:
    """Whether the multi-tensor kernels apply to ``lists`` (parallel lists of tensors):
    ``ndarray`` instances of one float dtype, C-contiguous, non-empty, sizes matching across
    the lists."""
    n = len(lists[0])
    if n == 0 or any(lst is None or len(lst) != n for lst in lists):
        return False
    first = lists[0][0]
    if not isinstance(first, ndarray):
        return False
    dtype = first.dtype
    if dtype.char not in "fd":
        return False
    for i in range(n):
        size = lists[0][i].size
        if size == 0:
            return False
        for lst in lists:
            x = lst[i]
            if (
                not (type(x) is ndarray or isinstance(x, ndarray))
                or x.dtype != dtype
                or x.size != size
                or not c_contiguous(x)
            ):
                return False
    return True


class Launcher:
    """The compiled kernels of one backend, and how many blocks to launch them with.

    Parameters
    ----------
    cupy : module
        CuPy (or the test suite's stand-in).
    sm_count : int
        Streaming multiprocessors of the GPU: grids are sized to fill them, no more.
    """

    def __init__(self, cupy: Any, sm_count: int) -> None:
        self.cp = cupy
        self.sm_count = sm_count
        self._kernels: dict[Any, Any] = {}

    def kernel(self, key: Any, make: Callable[[], tuple[str, str]]) -> Any:
        """The compiled kernel for ``key``; ``make()`` returns its ``(source, name)``."""
        kernel = self._kernels.get(key)
        if kernel is None:
            source, name = make()
            kernel = self.cp.RawKernel(source, name)
            self._kernels[key] = kernel
        return kernel

    def blocks(self, work: int, per_sm: int = 8) -> int:
        """Blocks of ``BLOCK`` threads for ``work`` items: enough to fill the GPU, no more."""
        return max(1, min(ceil_div(work, _kernels.BLOCK), self.sm_count * per_sm))

    def colsum_grid(self, rows: int, cols: int, one_chunk_rows: int) -> tuple[int, int]:
        """``(rows_per_block, row_chunks)`` of the column-sum kernels: about 8 blocks per SM,
        and one row chunk (no second launch) up to ``one_chunk_rows`` rows."""
        if rows <= one_chunk_rows:
            return max(8, ceil_div(rows, 8) * 8), 1
        col_tiles = ceil_div(cols, _kernels.COLSUM_BLOCK[0])
        chunks = max(1, min(ceil_div(self.sm_count * 8, col_tiles), ceil_div(rows, 64)))
        rows_per_block = ceil_div(ceil_div(rows, chunks), 8) * 8
        return rows_per_block, ceil_div(rows, rows_per_block)

    def sum_segments(self, src: Array, out: Array, n_segments: int, seglen: int) -> None:
        """``out[k] = sum(src[k * seglen : (k + 1) * seglen])``: the second launch of a
        reduction, adding the partial sums of the first in a fixed order."""
        dtype = out.dtype.name
        kernel = self.kernel(("sum_segments", dtype), lambda: _kernels.sum_segments_source(dtype))
        threads = 32 if seglen <= 256 else _kernels.BLOCK
        kernel((n_segments,), (threads,), (src, out, np.int64(seglen)))

    def multi_tensor(
        self,
        kind: tuple,
        make: Callable[[tuple[int, ...], str], tuple[str, str]],
        lists: tuple[list[Array], ...],
        scalars: tuple,
    ) -> None:
        """Launch a multi-tensor kernel over ``lists`` (parallel lists of tensors), in groups.

        ``make(sizes, dtype)`` renders the kernel of one group; ``scalars`` follow the
        tensors' pointers in its arguments.
        """
        dtype = lists[0][0].dtype.name
        n = len(lists[0])
        for start in range(0, n, _MAX_TENSORS_PER_LAUNCH):
            group = range(start, min(n, start + _MAX_TENSORS_PER_LAUNCH))
            sizes = tuple(int(lists[0][i].size) for i in group)
            kernel = self.kernel((*kind, sizes, dtype), lambda s=sizes: make(s, dtype))
            args = [lst[i] for i in group for lst in lists]
            kernel((self.blocks(sum(sizes)),), (_kernels.BLOCK,), (*args, *scalars))
