"""The whole-network kernels of a narrow network on the numba backend, as the model sees them.

:class:`SmallNetwork` wraps one compiled network kernel module (the one specialized on a
shape, or through :class:`GenericNetwork` the generic one of :mod:`._numba_generic`);
:class:`StagedNetwork` is what :meth:`NumbaBackend.fused_network` hands the model: it runs
the best kernel loaded so far and decides which to ask the background compiler for.
"""

from __future__ import annotations

import time
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ops.layout import param_layout
from ..ops.table import get_activation, get_loss
from . import _layer_loop as layer_loop
from . import _numba_compile as C
from . import _threads
from .base import NetworkSpec

if TYPE_CHECKING:
    from .numba_backend import NumbaBackend

__all__ = ["SmallNetwork", "GenericNetwork", "StagedNetwork", "NEXT_RUN_AFTER"]


class SmallNetwork:
    """The fused whole-network kernels of one narrow :class:`NetworkSpec`."""

    def __init__(
        self,
        spec: NetworkSpec,
        module: Any,
        parallel_min_rows: int,
        parallel_ready: Any = None,
    ) -> None:
        self.spec = spec
        # None: the parallel kernels compile on first use; else a callable saying whether
        # they are loaded (the serial ones run until then).
        self._parallel_ready = parallel_ready
        self._module = module
        self._dtype = np.dtype(spec.dtype)
        self._block = int(module.BLOCK)
        self.parallel_min_rows = parallel_min_rows
        self._layout = [(s.offset, s.end, s.shape) for s in param_layout(spec.widths)]

    def _chunks(self, n: int) -> tuple[bool, int]:
        if n < self.parallel_min_rows:
            return False, 1
        if self._parallel_ready is not None and not self._parallel_ready():
            return False, 1
        # As many chunks as the pool may have threads, whatever the threads now active: the
        # step tuner (``_step_tuner``) runs this kernel on one thread or on the pool, and the
        # same chunks summed in the same order give the same numbers either way.
        return True, _threads.pool_size()

    def loss_and_gradients(
        self, params: list[Any], X: Any, y: Any, denom: float
    ) -> tuple[Any, list[Any]]:
        """Loss summed over the batch and the gradients of ``loss_sum / denom``."""
        parallel, chunks = self._chunks(X.shape[0])
        kernel = self._module.train_parallel if parallel else self._module.train_serial
        # Numba checks the argument types (and compiles for any new ones) as it dispatches.
        loss, *grads = kernel(X, y, *params, 1.0 / denom, chunks, self._block)
        return self._dtype.type(loss), grads

    def forward(self, params: list[Any], X: Any) -> Any:
        """Outputs after the output activation."""
        parallel, chunks = self._chunks(X.shape[0])
        kernel = self._module.forward_parallel if parallel else self._module.forward_serial
        return kernel(X, *params, chunks, self._block)

    def compile(self) -> None:
        """Compile (or load from the disk cache) the serial and parallel kernels."""
        d = self.spec.widths
        rng = np.random.default_rng(0)
        params = [np.asarray(rng.standard_normal(s), self._dtype) for _, _, s in self._layout]
        X = np.zeros((3, d[0]), self._dtype)
        y = np.zeros((3, d[-1]), self._dtype)
        m = self._module
        for train, forward in (
            (m.train_serial, m.forward_serial),
            (m.train_parallel, m.forward_parallel),
        ):
            train(X, y, *params, 1.0, 2, self._block)
            forward(X, *params, 2, self._block)


#: Seconds without its specialized kernel after which a network's specialized kernel (where
#: it pays) is compiled for the next run, in a detached child at exit, if this run has not
#: compiled it: a job too short to repay the compile itself gains from it on every later run.
NEXT_RUN_AFTER = 0.25


class StagedNetwork:
    """A narrow network's kernels while its fused kernels may still be compiling.

    A step runs the best of what is loaded: the fused kernel specialized on this shape
    (:mod:`._numba_fused`), else the generic fused kernel (:mod:`._numba_generic`, compiled
    once per dtype, activation set and output, whatever the widths), else the per-layer
    hooks (NumPy's until their kernels are loaded). The generic kernel is asked for at once.

    The specialized kernel is asked for at once when it is in the disk cache; otherwise only
    where it beats the generic one by enough to repay its compilation, after the network
    has run ``specialize_after`` seconds without it (the rent-or-buy rule; the compile runs
    beside the training, in a child process). Measured (serial, float32 and float64, 2-core
    AVX2 machine): the specialized kernel is faster only for the unrolled per-sample kernel
    of the smallest networks (at most ``_numba_paths.UNROLL_LIMIT`` weights; generic time
    1.5-2.0x the specialized one on 2-4-3-1), and slower than the generic one for every
    lane-block shape measured (0.5-0.8x on 13-32-3, 64-48-10, 64-64-64-10), so only the
    former is ever specialized while the generic kernel is there. Without the generic kernel
    (it failed to compile, or ``NumbaBackend.fuse_generic`` is off) every narrow shape is.
    A specialized kernel that does not pay is not loaded even when it is in the disk cache.

    A job that ends before its specialized kernel is compiled, where it pays, after
    :data:`NEXT_RUN_AFTER` seconds without it leaves it to be compiled after the process
    exits (with anything still queued), so that the next run of the shape starts on it.
    """

    def __init__(self, backend: NumbaBackend, spec: NetworkSpec) -> None:
        self.spec = spec
        self._backend = backend
        self._acts = [get_activation(a) for a in spec.activations]
        self._loss = get_loss(spec.loss)
        self._serial = C.fused_task(spec, parallel=False)
        self._serial_key = C.task_key(self._serial)
        self._parallel = C.fused_task(spec, parallel=True)
        self._parallel_key = C.task_key(self._parallel)
        self._fused: SmallNetwork | None = None
        self._failed = False
        self._parallel_ok = False
        self._spent = 0.0
        self._wanted = False
        # the generic tier: its serial and parallel tasks, kernel object, failure, gate
        self._generic_tasks = (C.generic_task(spec, False), C.generic_task(spec, True))
        self._generic_keys = tuple(C.task_key(t) for t in self._generic_tasks)
        self._generic: SmallNetwork | None = None
        self._generic_failed = not backend.fuse_generic
        self._generic_parallel_ok = False
        self._pays = C.specialization_pays(spec)
        if not self._generic_failed:
            C.submit(self._generic_tasks[0])  # once per process; a load if on disk
        if (
            backend.specialize_after is not None
            and self._worth_specializing()
            and C.state(self._serial_key) is None
            and C.cached(self._serial)
        ):
            C.submit(self._serial)  # a load from the disk cache: milliseconds

    @property
    def parallel_min_rows(self) -> int:
        """Batches smaller than this run serial kernels (the step tuner leaves them alone)."""
        return self._backend.parallel_min_rows

    def _parallel_loaded(self) -> bool:
        if self._parallel_ok:
            return True
        status = C.state(self._parallel_key)
        if status is None:
            C.submit(self._parallel)  # asked for by the first batch big enough to use it
        self._parallel_ok = status == "ready"
        return self._parallel_ok

    def _current(self) -> SmallNetwork | None:
        """The fused kernel once loaded, else the generic one once loaded; ``None`` while
        the per-layer path runs."""
        if self._fused is not None or self._failed or not self._worth_specializing():
            return self._fused or self._generic_current()
        status = C.state(self._serial_key)
        if status == "ready":
            from . import _numba_fused

            module = _numba_fused.load_module(self.spec)
            self._fused = SmallNetwork(
                self.spec, module, self._backend.parallel_min_rows, self._parallel_loaded
            )
        elif status == "failed":
            self._failed = True
            warnings.warn(
                f"the fused numba kernel for {self.spec} did not compile; the generic fused "
                f"kernel or the per-layer kernels run instead ({C.error(self._serial_key)})",
                RuntimeWarning,
                stacklevel=4,
            )
        elif status is None:
            after = self._backend.specialize_after
            if after is not None and self._spent >= after:
                C.submit(self._serial)
        return self._fused or self._generic_current()

    def _worth_specializing(self) -> bool:
        """Whether the specialized kernel is faster than what runs without it (see the class
        notes): a kernel that is not is neither compiled nor loaded from the disk cache."""
        return self._generic_failed or self._pays

    def _generic_current(self) -> SmallNetwork | None:
        """The generic fused kernel once loaded (``None`` before, or if it failed)."""
        if self._generic is not None or self._generic_failed:
            return self._generic
        key = self._generic_keys[0]
        status = C.state(key)
        if status == "ready":
            from . import _numba_generic

            module = _numba_generic.load_module(_numba_generic.generic_key(self.spec))
            self._generic = GenericNetwork(
                self.spec, module, self._backend.parallel_min_rows, self._generic_parallel_loaded
            )
        elif status == "failed":
            self._generic_failed = True
            warnings.warn(
                f"the generic fused numba kernel for {self.spec} did not compile; the "
                f"per-layer kernels run instead ({C.error(key)})",
                RuntimeWarning,
                stacklevel=5,
            )
        elif status is None:
            C.submit(self._generic_tasks[0])
        return self._generic

    def _generic_parallel_loaded(self) -> bool:
        if self._generic_parallel_ok:
            return True
        status = C.state(self._generic_keys[1])
        if status is None:
            C.submit(self._generic_tasks[1])  # asked for by the first batch big enough
        self._generic_parallel_ok = status == "ready"
        return self._generic_parallel_ok

    def loss_and_gradients(
        self, params: list[Any], X: Any, y: Any, denom: float
    ) -> tuple[Any, list[Any]]:
        """Loss summed over the batch and the gradients of ``loss_sum / denom``."""
        fused = self._current()
        if fused is not None and fused is self._fused:
            return fused.loss_and_gradients(params, X, y, denom)
        # time without the specialized kernel: what decides whether to compile it
        start = time.perf_counter()
        if fused is not None:
            result = fused.loss_and_gradients(params, X, y, denom)
        else:
            result = layer_loop.loss_and_gradients(
                self._backend, params, self._acts, self._loss, X, y, denom
            )
        self._spent += time.perf_counter() - start
        after = self._backend.specialize_after
        if not self._wanted and after is not None and self._spent >= min(after, NEXT_RUN_AFTER):
            # Too short a run to pay for the compile now, long enough that the next run of
            # this shape gains from it: compiled after this process exits, if not before.
            self._wanted = True
            if self._worth_specializing():
                C.want_for_next_run(self._serial)
        return result

    def forward(self, params: list[Any], X: Any) -> Any:
        """Outputs after the output activation."""
        fused = self._current()
        if fused is not None:
            return fused.forward(params, X)
        return layer_loop.forward_trace(self._backend, params, self._acts, X)[-1][1]


class GenericNetwork(SmallNetwork):
    """The generic fused kernels run for one narrow :class:`NetworkSpec`.

    Parameters are packed into one flat vector per call (a copy of at most a few thousand
    numbers, microseconds) and the gradients come back as views of one flat vector in the
    parameters' shapes.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        module: ModuleType,
        parallel_min_rows: int,
        parallel_ready: Any = None,
    ) -> None:
        from ._numba_generic import shape_tables

        super().__init__(spec, module, parallel_min_rows, parallel_ready)
        self._tables = shape_tables(spec, module.HIDDEN)

    def _pack(self, params: list[Any]) -> Any:
        return np.concatenate([p.reshape(-1) for p in params])

    def loss_and_gradients(
        self, params: list[Any], X: Any, y: Any, denom: float
    ) -> tuple[Any, list[Any]]:
        """Loss summed over the batch and the gradients of ``loss_sum / denom``."""
        parallel, chunks = self._chunks(X.shape[0])
        kernel = self._module.train_parallel if parallel else self._module.train_serial
        # contiguous inputs keep the one compiled signature (a no-op for the model's arrays)
        X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
        loss, flat = kernel(X, y, self._pack(params), *self._tables, 1.0 / denom, chunks)
        grads = [flat[lo:hi].reshape(shape) for lo, hi, shape in self._layout]
        return self._dtype.type(loss), grads

    def forward(self, params: list[Any], X: Any) -> Any:
        """Outputs after the output activation."""
        parallel, chunks = self._chunks(X.shape[0])
        kernel = self._module.forward_parallel if parallel else self._module.forward_serial
        X = np.ascontiguousarray(X)
        return kernel(X, self._pack(params), *self._tables, chunks)

    def compile(self) -> None:
        """Compile (or load from the disk cache) the serial and parallel kernels."""
        from ._numba_generic import generic_key, sample_arguments

        X, Y, P, tables = sample_arguments(generic_key(self.spec))
        m = self._module
        for train, forward in (
            (m.train_serial, m.forward_serial),
            (m.train_parallel, m.forward_parallel),
        ):
            train(X, Y, P, *tables, 1.0, 2)
            forward(X, P, *tables, 2)
