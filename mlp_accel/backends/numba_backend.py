"""The Numba backend: NumPy as ``xp``, the hot hooks replaced by jitted kernels.

Two paths run a training step:

- **Narrow networks** (every layer at most :data:`~._numba_fused.MAX_WIDTH` wide):
  :meth:`NumbaBackend.fused_network` offers a whole-network kernel generated for the exact
  widths, which walks every sample through forward and backward in cache and reads the batch
  once (:mod:`._numba_fused`).
- **Wide networks**: matrix products stay on NumPy's BLAS; bias + activation, activation
  derivative + column sums, the output loss gradient and the optimizer updates are fused
  kernels from :mod:`._numba_kernels`.

Thread pools: on few cores, Numba's pool and OpenBLAS's pool spin-wait against each other
when their work interleaves. The kernels beside BLAS therefore run serially (one pool, BLAS,
owns the cores during a step) unless the elementwise work alone is very large
(:attr:`NumbaBackend.parallel_min_elements`); the fused small-network kernel never calls BLAS
and runs its parallel twin once the batch is large enough
(:attr:`NumbaBackend.parallel_min_rows`). During training, whether that twin gets the pool or
one thread, and how many threads BLAS gets, is measured per shape (:mod:`._threads`).

Numba compiles on first use (never at import) and caches machine code on disk
(``cache=True``); :meth:`NumbaBackend.warmup` compiles ahead, so benchmarks do not time it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..activations import Activation
from ..losses import Loss
from . import _threads
from .base import BackendUnavailableError, FusedNetwork, NetworkSpec
from .numpy_backend import NumpyBackend

__all__ = ["NumbaBackend"]

_FLOATS = (np.dtype("float32"), np.dtype("float64"))


def _native(*arrays: Any) -> bool:
    """Whether the kernels take these arrays: C-contiguous NumPy floats of one dtype."""
    first = arrays[0]
    if not isinstance(first, np.ndarray) or first.dtype not in _FLOATS:
        return False
    dtype = first.dtype
    for x in arrays:
        if not isinstance(x, np.ndarray) or x.dtype != dtype or not x.flags.c_contiguous:
            return False
    return True


class _SmallNetwork:
    """The fused whole-network kernels of one narrow :class:`NetworkSpec`."""

    def __init__(self, spec: NetworkSpec, module: Any, parallel_min_rows: int) -> None:
        self.spec = spec
        self._module = module
        self._dtype = np.dtype(spec.dtype)
        self._block = int(module.BLOCK)
        self.parallel_min_rows = parallel_min_rows
        d = spec.widths
        self._layout: list[tuple[int, int, tuple[int, ...]]] = []
        offset = 0
        for n_in, n_out in zip(d[:-1], d[1:]):
            self._layout.append((offset, offset + n_in * n_out, (n_in, n_out)))
            offset += n_in * n_out
            self._layout.append((offset, offset + n_out, (n_out,)))
            offset += n_out

    def _chunks(self, n: int) -> tuple[bool, int]:
        if n < self.parallel_min_rows:
            return False, 1
        # As many chunks as the pool may have threads, whatever the threads now active: the
        # step tuner (``_threads``) runs this kernel on one thread or on the pool, and the
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


class NumbaBackend(NumpyBackend):
    """NumPy arrays on the host CPU, hot hooks replaced by Numba-jitted kernels.

    Raises
    ------
    BackendUnavailableError
        If numba is not installed.
    """

    name = "numba"

    #: Elements of elementwise work from which a hook beside BLAS runs in parallel. Measured
    #: on 2 cores: waking Numba's pool between two GEMMs, while OpenBLAS's threads still spin,
    #: cost more than it saved even at 4096 x 1024 (0.79x NumPy parallel, 1.10x serial), so
    #: only work far larger than a step's spin-down runs in parallel.
    parallel_min_elements = 1 << 26
    #: Batch rows from which the fused small-network kernel runs in parallel.
    parallel_min_rows = 2048

    def __init__(self) -> None:
        try:
            import numba
        except ImportError as exc:
            raise BackendUnavailableError(
                "backend 'numba' is unavailable: numba is not installed (pip install numba)"
            ) from exc
        from . import _numba_fused, _numba_kernels

        _threads.configure_numba(numba)  # before any parallel kernel starts the pool
        self._numba = numba
        self._kernels = _numba_kernels
        self._fused_module = _numba_fused
        self._act = _numba_kernels.ACTIVATION_CODES
        self._loss = _numba_kernels.LOSS_CODES
        self._networks: dict[NetworkSpec, _SmallNetwork] = {}

    # Transfers, copies and row gathers are the NumPy backend's: the data is NumPy's.
    def describe(self) -> dict[str, str]:
        """Numba's version, threading layer and thread count, without running a kernel.

        Numba picks its threading layer, and starts its pool, at the first parallel call;
        describing the backend must not do that (nor compile a kernel), so before then this
        reports the layer asked for (``NUMBA_THREADING_LAYER``, ``"default"`` unless set) and
        the pool's configured size.
        """
        numba = self._numba
        from numba.np.ufunc import parallel

        if getattr(parallel, "_is_initialized", False):
            layer = str(numba.threading_layer())
            threads = str(numba.get_num_threads())
        else:
            requested = str(getattr(numba.config, "THREADING_LAYER", "default"))
            layer = f"not started (requested: {requested})"
            threads = str(min(_threads.pool_size(), int(numba.config.NUMBA_NUM_THREADS)))
        return {
            **super().describe(),
            "numba": numba.__version__,
            "threading_layer": layer,
            "threads": threads,
        }

    def _run(self, hook: str, elements: int, *args: Any) -> Any:
        """Run the kernel of ``hook``: its parallel twin when ``elements`` is large enough."""
        serial, parallel = self._kernels.KERNELS[hook]
        if parallel is not None and elements >= self.parallel_min_elements:
            return parallel(*args, self._numba.get_num_threads())
        return serial(*args)

    # -- layer hooks -------------------------------------------------------------------
    def dense_forward(self, a_prev: Any, W: Any, b: Any, activation: Activation) -> tuple[Any, Any]:
        code = self._act.get(activation.name)
        if code is None or not _native(a_prev, W, b):
            return super().dense_forward(a_prev, W, b, activation)
        z = a_prev @ W  # BLAS
        a = z if code == 0 else np.empty_like(z)
        self._run("dense_forward", z.size, z, b, code, a)
        return z, a

    def dense_backward(
        self,
        grad: Any,
        z: Any,
        a: Any,
        a_prev: Any,
        W: Any,
        activation: Activation,
        need_input_grad: bool,
    ) -> tuple[Any, Any, Any | None]:
        code = self._act.get(activation.name)
        if code is None or not _native(grad, z, a, a_prev, W):
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        # grad is always a fresh array made by the layer above (or the loss), as the NumPy
        # backend also relies on: dz overwrites it instead of filling a new n-by-width array.
        dz = grad
        db = np.empty(grad.shape[1], dtype=grad.dtype)
        self._run("dense_backward", grad.size, grad, z, a, code, dz, db)
        dW = a_prev.T @ dz  # BLAS
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def output_loss_gradient(
        self, z: Any, yhat: Any, y: Any, loss: Loss, activation: Activation, denom: float
    ) -> tuple[Any, Any]:
        loss_code = self._loss.get(loss.name)
        code = self._act.get(activation.name)
        fused = loss.fused_activation == activation.name
        # Unmatched pairs are only defined for squared error (the others need their output).
        if (
            loss_code is None
            or code is None
            or not (fused or loss.name == "squared_error")
            or not _native(z, yhat, y)
        ):
            return super().output_loss_gradient(z, yhat, y, loss, activation, denom)
        dz = np.empty_like(yhat)
        total = self._run(
            "output_loss_gradient", z.size, z, yhat, y, loss_code, code, fused, 1.0 / denom, dz
        )
        return z.dtype.type(total), dz

    def loss_sum(self, z: Any, yhat: Any, y: Any, loss: Loss) -> Any:
        loss_code = self._loss.get(loss.name)
        if loss_code is None or not _native(z, yhat, y):
            return super().loss_sum(z, yhat, y, loss)
        return z.dtype.type(self._kernels.loss_sum(z, yhat, y, loss_code))

    # -- optimizer hooks (in place) ------------------------------------------------------
    def sgd_update(
        self,
        params: list[Any],
        grads: list[Any],
        velocity: list[Any] | None,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> tuple[list[Any], list[Any] | None]:
        # Only the first group is checked: per-array checks would cost more than the update
        # of a small network. The kernels take any layout and dtype the model produces.
        if not params or not _native(
            params[0], grads[0], *([] if velocity is None else velocity[:1])
        ):
            return super().sgd_update(params, grads, velocity, lr, momentum, nesterov)
        if velocity is None:
            kernel = self._kernels.sgd_update
            for p, g in zip(params, grads):
                kernel(p, g, lr)
        else:
            kernel = self._kernels.sgd_momentum_update
            for p, g, v in zip(params, grads, velocity):
                kernel(p, g, v, lr, momentum, nesterov)
        return params, velocity

    def adam_update(
        self,
        params: list[Any],
        grads: list[Any],
        m: list[Any],
        v: list[Any],
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
    ) -> tuple[list[Any], list[Any], list[Any]]:
        if not params or not _native(params[0], grads[0], m[0], v[0]):
            return super().adam_update(params, grads, m, v, step, lr, beta1, beta2, eps)
        c1 = 1.0 - beta1**step
        c2 = 1.0 - beta2**step
        serial, parallel = self._kernels.adam_update, self._kernels.adam_update_parallel
        big = self.parallel_min_elements
        for p, g, mi, vi in zip(params, grads, m, v):
            if p.size < big:
                serial(p, g, mi, vi, lr, beta1, beta2, eps, c1, c2)
            else:
                chunks = self._numba.get_num_threads()
                parallel(p, g, mi, vi, lr, beta1, beta2, eps, c1, c2, chunks)
        return params, m, v

    # -- whole networks ----------------------------------------------------------------
    def fused_network(self, spec: NetworkSpec) -> FusedNetwork | None:
        """The generated small-network kernel when every layer is narrow, else ``None``."""
        network = self._networks.get(spec)
        if network is None:
            if not self._fused_module.supports(spec):
                return None
            module = self._fused_module.load_module(spec)
            network = _SmallNetwork(spec, module, self.parallel_min_rows)
            self._networks[spec] = network
        return network

    def warmup(self, spec: NetworkSpec) -> None:
        """Compile, or load from the disk cache, every kernel a model of ``spec`` runs.

        Both the serial and the parallel variant of each kernel are compiled, for the
        dtype of ``spec`` and the array shapes the hooks pass.
        """
        network = self.fused_network(spec)
        if network is not None:
            network.compile()
        kernel_module = self._kernels
        dtype = np.dtype(spec.dtype)
        mat = np.ones((2, 3), dtype)
        vec = np.ones(3, dtype)
        for index, extra in ((0, ()), (1, (2,))):  # the serial kernels, then the parallel twins
            kernels = {hook: pair[index] for hook, pair in kernel_module.KERNELS.items()}
            kernels["dense_forward"](mat.copy(), vec, 1, mat.copy(), *extra)
            kernels["dense_backward"](mat, mat, mat, 1, mat.copy(), vec.copy(), *extra)
            kernels["output_loss_gradient"](
                mat, mat * 0.5, mat, 0, 3, True, 1.0, mat.copy(), *extra
            )
            for p in (mat.copy(), vec.copy()):
                kernels["adam_update"](
                    p, p * 0, p * 0, p * 0, 0.1, 0.9, 0.999, 1e-8, 0.1, 0.01, *extra
                )
        kernel_module.loss_sum(mat, mat * 0.5, mat, 0)
        for p in (mat.copy(), vec.copy()):
            kernel_module.sgd_update(p, p * 0, 0.1)
            kernel_module.sgd_momentum_update(p, p * 0, p * 0, 0.1, 0.9, False)
