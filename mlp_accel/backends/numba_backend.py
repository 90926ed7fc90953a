"""The Numba backend: NumPy as ``xp``, the hot hooks replaced by jitted kernels.

Two paths run a training step:

- **Narrow networks** (every layer at most :data:`~._numba_fused.MAX_WIDTH` wide):
  :meth:`NumbaBackend.fused_network` offers a whole-network kernel that walks every sample
  through forward and backward in cache and reads the batch once: a generic one that takes
  the widths as data, compiled once per dtype, activation set and output
  (:mod:`._numba_generic`), and for the smallest networks one generated for the exact
  widths (:mod:`._numba_fused`).
- **Wide networks**: matrix products stay on NumPy's BLAS; bias + activation, activation
  derivative + column sums, the output loss gradient and the optimizer updates are fused
  kernels from :mod:`._numba_kernels`.

Thread pools: on few cores, Numba's pool and OpenBLAS's pool spin-wait against each other
when their work interleaves. The kernels beside BLAS therefore run serially (one pool, BLAS,
owns the cores during a step) unless the elementwise work alone is very large
(:attr:`NumbaBackend.parallel_min_elements`); the fused small-network kernel never calls BLAS
and runs its parallel twin once the batch is large enough
(:attr:`NumbaBackend.parallel_min_rows`). During training, whether that twin gets the pool or
one thread, and how many threads BLAS gets, is measured per shape (:mod:`._step_tuner`).

Compilation never stalls a step (:mod:`._numba_compile`): kernels are compiled in the
background and cached on disk (``cache=True``); until they are loaded a hook runs NumPy's
code, and a narrow network the per-layer path until the generic fused kernel is loaded. The
specialized kernel of a shape is asked for only where it beats the generic one, once the
network has spent :attr:`NumbaBackend.specialize_after` seconds without it (a short job never
pays for it), or at once when it is already in the disk cache; kernels are swapped in
between two steps. :meth:`NumbaBackend.warmup` compiles ahead and waits, so
benchmarks do not time compilation. ``MLP_ACCEL_NUMBA_COMPILE=sync`` restores compiling on
first use in the calling thread (bit-for-bit repeatable runs: the swap changes rounding).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..ops.table import Activation, Loss
from . import _numba_compile as C
from . import _threads
from ._numba_networks import SmallNetwork, StagedNetwork
from .base import BackendUnavailableError, FusedNetwork, NetworkSpec, adam_bias_corrections
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


def _spec_items(spec: NetworkSpec) -> list[tuple]:
    """The per-layer kernel items a model of ``spec`` runs (see ``NumbaBackend._layers_ready``)."""
    activations, outputs = C.layer_items(spec)
    return [
        *(("act", name) for name in activations),
        *(("out", loss, name) for loss, name in outputs),
        ("optim",),
    ]


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
    #: Compile in the background (True) or on first use in the calling thread (False, the
    #: ``MLP_ACCEL_NUMBA_COMPILE=sync`` setting).
    background = True
    #: Compile the per-layer kernels in the background too (False: on first use, in the
    #: calling thread, while fused kernels still compile in the background; the test suite
    #: uses it so that every numba test runs the kernels it names, not NumPy's fallback).
    background_layers = True
    #: Seconds a narrow network runs without its specialized fused kernel (on the generic
    #: fused kernel, or the per-layer path) before that kernel is compiled (in the
    #: background), where it pays at all (see :class:`StagedNetwork`); ``None``: never
    #: specialize. Rent or buy: the specialized kernel saves ``1 - 1/r`` of the time spent
    #: on the generic one, and compiling it takes ``C`` of a core, so it is bought once the
    #: time already spent, ``C r / (r - 1)``, shows the job is long enough to repay it.
    #: Measured on a quiet 2-core machine for 2-4-3-1 in float32: ``r`` 1.94 (step time),
    #: ``C`` 7.6 s (serial kernels, in a child process): 15.7 s.
    specialize_after: float | None = 15.0
    #: Run a narrow network on the generic fused kernel (:mod:`._numba_generic`, compiled
    #: once per dtype, activation set and output) until its specialized kernel is loaded.
    fuse_generic = True

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
        self._networks: dict[NetworkSpec, Any] = {}
        mode = os.environ.get("MLP_ACCEL_NUMBA_COMPILE", "background").strip().lower()
        if mode not in ("background", "sync"):
            raise ValueError(
                f"MLP_ACCEL_NUMBA_COMPILE must be 'background' or 'sync', got {mode!r}"
            )
        self.background = mode == "background"
        # (dtype, parallel, item) of the per-layer kernels loaded (the hot-path test), and the
        # compile task that covers each item asked for; an item is ("act", name),
        # ("out", loss, activation) or ("optim",).
        self._loaded: set[tuple] = set()  # (np.dtype, parallel, item)
        self._covering: dict[tuple, str] = {}
        self._asked: set[NetworkSpec] = set()
        self._warned: set[str] = set()

    def _submit_layers(self, dtype: str, parallel: bool, items: list[tuple]) -> None:
        """Ask for one compile task covering ``items`` (those not covered yet)."""
        items = [i for i in items if (dtype, parallel, i) not in self._covering]
        if not items:
            return
        task = C.layer_task(
            dtype,
            parallel,
            activations=[i[1] for i in items if i[0] == "act"],
            outputs=[(i[1], i[2]) for i in items if i[0] == "out"],
            optim=("optim",) in items,
        )
        key = C.submit(task)
        for item in items:
            self._covering[(dtype, parallel, item)] = key

    def _layers_ready(self, dtype: Any, item: tuple, parallel: bool = False) -> bool:
        """Whether the per-layer kernels of ``item`` in ``dtype`` may run now (else NumPy's
        hooks do).

        In the background mode a first call asks for them and answers False until they are
        loaded; a failed compile is reported once and leaves NumPy's hooks in place.
        """
        slot = (dtype, parallel, item)
        if slot in self._loaded:  # keyed by the dtype object: its .name costs microseconds
            return True
        name = dtype.name
        if not (self.background and self.background_layers):
            self._loaded.add(slot)
            return True
        key = self._covering.get((name, parallel, item))
        if key is None:
            self._submit_layers(name, parallel, [item])
            return False
        status = C.state(key)
        if status == "ready":
            self._loaded.add(slot)
            return True
        if status == "failed" and key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"numba's per-layer kernels for {name} did not compile; NumPy's code runs "
                f"instead ({C.error(key)})",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

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

    def _run(
        self, hook: str | tuple[Any, Any], elements: int, *args: Any, item: tuple = ("optim",)
    ) -> Any:
        """Run the kernel of ``hook`` (a name in ``KERNELS`` or a ``(serial, parallel)``
        pair of a generated module): its parallel twin when ``elements`` is large enough and
        the parallel kernels of ``item`` are loaded."""
        serial, parallel = self._kernels.KERNELS[hook] if isinstance(hook, str) else hook
        if (
            parallel is not None
            and elements >= self.parallel_min_elements
            and self._layers_ready(args[0].dtype, item, parallel=True)
        ):
            return parallel(*args, self._numba.get_num_threads())
        return serial(*args)

    # -- layer hooks -------------------------------------------------------------------
    def dense_forward(self, a_prev: Any, W: Any, b: Any, activation: Activation) -> tuple[Any, Any]:
        item = ("act", activation.name)
        if (
            activation.row is None
            or not _native(a_prev, W, b)
            or not self._layers_ready(W.dtype, item)
        ):
            return super().dense_forward(a_prev, W, b, activation)
        z = a_prev @ W  # BLAS
        a = z if activation.name == "identity" else np.empty_like(z)
        m = self._kernels.layer_module(activation.name, z.dtype.name)
        self._run((m.dense_forward, m.dense_forward_parallel), z.size, z, b, a, item=item)
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
        item = ("act", activation.name)
        if (
            activation.row is None
            or not _native(grad, z, a, a_prev, W)
            or not self._layers_ready(W.dtype, item)
        ):
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        # grad is always a fresh array made by the layer above (or the loss), as the NumPy
        # backend also relies on: dz overwrites it instead of filling a new n-by-width array.
        dz = grad
        db = np.empty(grad.shape[1], dtype=grad.dtype)
        m = self._kernels.layer_module(activation.name, grad.dtype.name)
        kernels = (m.dense_backward, m.dense_backward_parallel)
        self._run(kernels, grad.size, grad, z, a, dz, db, item=item)
        dW = a_prev.T @ dz  # BLAS
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def output_loss_gradient(
        self, z: Any, yhat: Any, y: Any, loss: Loss, activation: Activation, denom: float
    ) -> tuple[Any, Any]:
        # A loss that requires its output activation is only defined with it.
        required = None if loss.row is None else loss.row.requires
        if (
            loss.row is None
            or activation.row is None
            or required not in (None, activation.name)
            or not _native(z, yhat, y)
            or not self._layers_ready(z.dtype, ("out", loss.name, activation.name))
        ):
            return super().output_loss_gradient(z, yhat, y, loss, activation, denom)
        dz = np.empty_like(yhat)
        m = self._kernels.output_module(loss.name, activation.name, z.dtype.name)
        kernels = (m.output_loss_gradient, m.output_loss_gradient_parallel)
        item = ("out", loss.name, activation.name)
        total = self._run(kernels, z.size, z, yhat, y, 1.0 / denom, dz, item=item)
        return z.dtype.type(total), dz

    def loss_sum(self, z: Any, yhat: Any, y: Any, loss: Loss) -> Any:
        if (
            loss.row is None
            or not _native(z, yhat, y)
            or not self._layers_ready(z.dtype, ("out", loss.name, loss.fused_activation))
        ):
            return super().loss_sum(z, yhat, y, loss)
        # the output module of the matched pair: loss_sum depends on the loss only
        m = self._kernels.output_module(loss.name, loss.fused_activation, z.dtype.name)
        return z.dtype.type(m.loss_sum(z, yhat, y))

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
        if (
            not params
            or not _native(params[0], grads[0], *([] if velocity is None else velocity[:1]))
            or not self._layers_ready(params[0].dtype, ("optim",))
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
        if (
            not params
            or not _native(params[0], grads[0], m[0], v[0])
            or not self._layers_ready(params[0].dtype, ("optim",))
        ):
            return super().adam_update(params, grads, m, v, step, lr, beta1, beta2, eps)
        c1, c2 = adam_bias_corrections(beta1, beta2, step)
        serial, parallel = self._kernels.adam_update, self._kernels.adam_update_parallel
        big = self.parallel_min_elements
        for p, g, mi, vi in zip(params, grads, m, v):
            if p.size < big or not self._layers_ready(p.dtype, ("optim",), parallel=True):
                serial(p, g, mi, vi, lr, beta1, beta2, eps, c1, c2)
            else:
                chunks = self._numba.get_num_threads()
                parallel(p, g, mi, vi, lr, beta1, beta2, eps, c1, c2, chunks)
        return params, m, v

    # -- whole networks ----------------------------------------------------------------
    def fused_network(self, spec: NetworkSpec) -> FusedNetwork | None:
        """The small-network kernels when every layer is narrow, else ``None``.

        In the background mode the object returned runs the per-layer hooks until the fused
        kernel generated for ``spec`` is compiled and loaded, then switches to it between two
        steps (:class:`StagedNetwork`).
        """
        network = self._networks.get(spec)
        if network is None:
            if self.background and spec not in self._asked:
                # The model asks once per spec, before its first step: one compile task for
                # every per-layer kernel the spec runs (a child process each costs a start-up),
                # after the generic fused kernel for a narrow one (it runs all its steps).
                self._asked.add(spec)
                if self.fuse_generic and self._fused_module.supports(spec):
                    C.submit(C.generic_task(spec))
                self._submit_layers(spec.dtype, False, _spec_items(spec))
            if not self._fused_module.supports(spec):
                return None
            if self.background:
                network = StagedNetwork(self, spec)
            else:
                module = self._fused_module.load_module(spec)
                network = SmallNetwork(spec, module, self.parallel_min_rows)
            self._networks[spec] = network
        return network

    def warmup(self, spec: NetworkSpec) -> None:
        """Compile, or load from the disk cache, every kernel a model of ``spec`` runs.

        Both the serial and the parallel variant of each kernel are compiled, for the
        dtype of ``spec`` and the array shapes the hooks pass; returns when they are loaded.

        Raises
        ------
        RuntimeError
            If a kernel failed to compile.
        """
        tasks = C.tasks_for(spec)
        if not self.background:
            for task in tasks:
                C.run_task(task)
            return
        keys = [C.submit(task) for task in tasks]
        for task, key in zip(tasks, keys):
            if task["kind"] == "layers":
                for item in _spec_items(spec):
                    self._covering.setdefault((spec.dtype, task["parallel"], item), key)
        C.wait(keys)
        failed = [C.error(k) for k in keys if C.state(k) == "failed"]
        if failed:
            raise RuntimeError(f"numba kernels for {spec} did not compile: {failed[0]}")
