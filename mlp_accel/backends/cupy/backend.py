"""The CuPy backend: the generic array-API equations on an NVIDIA GPU, plus fused CUDA kernels.

``xp`` is ``array_api_compat.cupy``, so every generic hook of :class:`~.base.Backend` runs on
the GPU unchanged. The hot hooks are overridden with kernels from :mod:`.kernels`
(compiled by NVRTC on first use and cached on disk by CuPy):

- ``dense_forward``: cuBLAS GEMM, then bias + activation in one pass (softmax per row);
- ``dense_backward``: ``dz = grad * f'(z)`` and the bias gradient's column sums in one pass,
  then two GEMMs (no ``da_prev`` for the first layer);
- ``output_loss_gradient``: ``dz`` and the loss sum of the matched output/loss pairs together;
- ``sgd_update`` / ``adam_update`` / ``optimizer_update``: one in-place launch over all
  parameter tensors (two passes and a reduction for the layer-wise rules, :mod:`.table`);
- ``fused_network``: for small networks (every width <= 32), forward, loss and backward of a
  whole batch in one kernel, one thread per sample, plus one reduction launch.

Anything else (another dtype, a non-contiguous array, a wide softmax) falls back to the generic
code. Data crosses between host and device only in ``asarray``/``index_array`` and
``to_numpy``; a training step launches kernels only, and its temporaries come from and go back
to CuPy's memory pool, so after the first step it allocates no new device memory.

This module holds the backend class and its hooks; what they use lives beside it:
:mod:`.device` (importing CuPy, probing the GPU, the options, TF32),
:mod:`.launch` (the kernel cache and launch sizes), :mod:`.staging` (streaming
batches to the GPU) and :mod:`.network` (the fused whole-network object).

CuPy is imported when the backend starts, never by ``import mlp_accel``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...ops.layout import param_layout
from ...ops.optimizers import OptimizerRow
from ...ops.table import Activation, Loss, get_activation, get_loss
from .. import _layer_loop as layer_loop
from ..base import Backend, NetworkSpec, adam_bias_corrections
from . import device as _device
from . import kernels as _kernels
from .device import INSTALL_HINT
from .launch import Launcher, c_contiguous, ceil_div, fusable, updatable
from .network import CupyFusedNetwork
from .staging import stream_batches
from .table import table_update

__all__ = ["CupyBackend", "INSTALL_HINT"]

Array = Any

# Seconds a free-memory estimate of max_batch_rows stays valid.
_MEMORY_ESTIMATE_TTL = 1.0
# Below these sizes a reduction runs in one block (or one row chunk) and needs no second
# launch: small steps are bound by launches, not by the GPU's width.
_ONE_BLOCK_ELEMENTS = 1 << 15
_ONE_CHUNK_ROWS = 2048


class CupyBackend(Backend):
    """Runs the equations on an NVIDIA GPU through CuPy, with fused kernels on the hot path.

    Parameters
    ----------
    device : int, optional
        The GPU to use. Default: ``$MLP_ACCEL_DEVICE``, else 0.
    tf32 : bool, optional
        Let float32 matrix products use TF32 tensor cores (faster, about 10 mantissa bits
        instead of 23). Default: ``$MLP_ACCEL_TF32``, else off. CuPy holds this setting
        per process; each backend re-applies its own when its hooks run, so backends with
        different settings can live side by side.

    Both are usually given through :func:`~mlp_accel.get_backend` (``get_backend("cupy",
    device=1, tf32=True)``), which starts one backend per device and setting. The
    environment variables are only read, as defaults.

    Raises
    ------
    TypeError
        ``device`` is not an integer, or ``tf32`` not a bool.
    ValueError
        ``device`` is negative.
    BackendUnavailableError
        CuPy is not installed, or it cannot use the GPU (no driver, no device, a broken
        CUDA install); the message says which.
    """

    name = "cupy"

    def __init__(self, device: int | None = None, tf32: bool | None = None) -> None:
        device = _device.device_option(device)
        tf32 = _device.tf32_option(tf32)
        cupy = _device.import_cupy()
        _device.probe_device(cupy, device)
        import array_api_compat.cupy as xp_cupy

        self._cp = cupy
        self._runtime = cupy.cuda.runtime
        self.xp = xp_cupy
        self.device_id = device
        self.device = f"cuda:{device}"
        # Kernels run on the current device; make it ours for this thread, and re-check in
        # every hook (_activate) for threads and libraries that switch devices.
        cupy.cuda.Device(device).use()
        props = self._runtime.getDeviceProperties(device)
        self._props = props
        self.tf32 = tf32
        if not _device.set_tf32(self.tf32) and self.tf32:
            warnings.warn(
                "this CuPy offers no switch for TF32: float32 products follow CUPY_TF32 "
                "(set it to 1 before starting Python)",
                RuntimeWarning,
                stacklevel=3,
            )
        self._pool = cupy.get_default_memory_pool()
        self._launch = Launcher(cupy, max(1, int(props.get("multiProcessorCount", 1))))
        self._network_kernels: dict[NetworkSpec, Any] = {}
        self._rows_cache: dict[NetworkSpec, tuple[int | None, float]] = {}
        # Test and tuning knobs: force micro-batching at this many rows; turn the fused
        # whole-network kernel off (MLP_ACCEL_CUPY_FUSED=0) to time the layer-by-layer path.
        self._max_rows_override: int | None = None
        self._use_fused = os.environ.get("MLP_ACCEL_CUPY_FUSED", "1").strip() != "0"
        self._one_chunk_rows = _ONE_CHUNK_ROWS
        self._one_block_elements = _ONE_BLOCK_ELEMENTS

    # -- device, transfers ------------------------------------------------------------------
    def _activate(self) -> None:
        """Make this backend's GPU current, and its TF32 setting CuPy's (both are process
        state another backend, or another library, may have changed)."""
        if self._runtime.getDevice() != self.device_id:
            self._runtime.setDevice(self.device_id)
        applied = _device.tf32_applied()
        if applied is not None and applied is not self.tf32:
            _device.set_tf32(self.tf32)

    def asarray(self, x: Any, dtype: str) -> Array:
        """Copy host data to this GPU as a C-contiguous ``dtype`` array (device data is cast)."""
        self._activate()
        cp = self._cp
        if isinstance(x, cp.ndarray):
            return cp.ascontiguousarray(x, dtype=dtype)
        return cp.asarray(np.ascontiguousarray(x, dtype=dtype))

    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy a device array to the host (waits for the work that produces it)."""
        return self._cp.asnumpy(x)

    def synchronize(self) -> None:
        """Block until all work queued on this GPU has finished."""
        self._cp.cuda.Device(self.device_id).synchronize()

    def copy(self, x: Array) -> Array:
        self._activate()
        return x.copy()

    def is_device_array(self, x: Any) -> bool:
        return isinstance(x, self._cp.ndarray)

    def index_array(self, index: Any) -> Array:
        self._activate()
        return self._cp.asarray(np.asarray(index))

    def take_rows(self, x: Array, index: Array) -> Array:
        self._activate()
        return self._cp.take(x, index, axis=0)

    def stream_to_device(
        self, host_batches: Iterator[tuple[Any, Any]], dtype: str
    ) -> Iterator[tuple[Array, Array]]:
        """Copy the next batch up while the current one computes.

        Through two pinned staging buffers and a second stream
        (:func:`~.staging.stream_batches`); the batches yielded are views of two device
        buffers, valid until the next batch is requested.
        """
        self._activate()
        yield from stream_batches(self._cp, host_batches, dtype)

    def describe(self) -> dict[str, str]:
        """GPU name, memory, compute capability, CUDA and CuPy versions, TF32 state."""
        return _device.describe_gpu(self._cp, self.device_id, self._props, self.tf32)

    # -- hot hooks ----------------------------------------------------------------------------
    def dense_forward(
        self, a_prev: Array, W: Array, b: Array, activation: Activation
    ) -> tuple[Array, Array]:
        act = activation.name
        if (
            (not _kernels.is_elementwise(act) and act != "softmax")
            or a_prev.dtype != W.dtype
            or b.ndim != 1
            or b.shape[0] != W.shape[1]
            or b.dtype != W.dtype
            or b.dtype.char not in "fd"
            or not c_contiguous(b)  # W may have any layout: cuBLAS takes it as it is
        ):
            return super().dense_forward(a_prev, W, b, activation)
        self._activate()
        cp = self._cp
        z = a_prev @ W
        rows, cols = z.shape
        dtype = z.dtype.name
        if act == "softmax":
            if cols > _kernels.MAX_SOFTMAX_WIDTH:
                z += b
                return z, activation.forward(z, xp=self.xp)
            a = cp.empty_like(z)
            kernel = self._launch.kernel(
                ("bias_softmax", dtype), lambda: _kernels.bias_softmax_source(dtype)
            )
            kernel(
                (self._launch.blocks(rows),),
                (_kernels.BLOCK,),
                (z, b, a, np.int64(rows), np.int64(cols)),
            )
            return z, a
        kernel = self._launch.kernel(
            ("bias_act", act, dtype), lambda: _kernels.bias_activation_source(act, dtype)
        )
        grid = (self._launch.blocks(rows * cols),)
        if act == "identity":
            kernel(grid, (_kernels.BLOCK,), (z, b, np.int64(rows), np.int64(cols)))
            return z, z
        a = cp.empty_like(z)
        kernel(grid, (_kernels.BLOCK,), (z, b, a, np.int64(rows), np.int64(cols)))
        return z, a

    def dense_backward(
        self,
        grad: Array,
        z: Array,
        a: Array,
        a_prev: Array,
        W: Array,
        activation: Activation,
        need_input_grad: bool,
    ) -> tuple[Array, Array, Array | None]:
        act = activation.name
        if not _kernels.is_elementwise(act) or grad.ndim != 2:
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        arrays = (grad,) if act == "identity" else (grad, z, a)
        if not fusable(*arrays) or grad.dtype != W.dtype or a_prev.dtype != W.dtype:
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        self._activate()
        cp = self._cp
        rows, cols = grad.shape
        dtype = grad.dtype.name
        rows_per_block, chunks = self._launch.colsum_grid(rows, cols, self._one_chunk_rows)
        db = cp.empty(cols, dtype=grad.dtype)
        # With one row chunk the kernel writes the column sums straight into db.
        dst = db if chunks == 1 else cp.empty(cols * chunks, dtype=grad.dtype)
        grid = (ceil_div(cols, _kernels.COLSUM_BLOCK[0]), chunks)
        tail = (np.int64(rows), np.int64(cols), np.int64(rows_per_block))
        kernel = self._launch.kernel(
            ("colsum", act, dtype), lambda: _kernels.colsum_source(act, dtype)
        )
        if act == "identity":
            dz = grad
            kernel(grid, _kernels.COLSUM_BLOCK, (grad, dst, *tail))
        else:
            dz = cp.empty_like(grad)
            kernel(grid, _kernels.COLSUM_BLOCK, (grad, z, a, dz, dst, *tail))
        if chunks > 1:
            self._launch.sum_segments(dst, db, cols, chunks)
        dW = a_prev.T @ dz
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def output_loss_gradient(
        self, z: Array, yhat: Array, y: Array, loss: Loss, activation: Activation, denom: float
    ) -> tuple[Array, Array]:
        act, name = activation.name, loss.name
        # every elementwise loss of the table with an output activation it accepts
        row = loss.row
        elementwise = (
            row is not None
            and row.value_tree is not None
            and row.requires in (None, act)
            and _kernels.is_elementwise(act)
        )
        softmax_ce = name == "cross_entropy" and act == "softmax"
        if (
            not (elementwise or softmax_ce)
            or z.ndim != 2
            or z.shape != y.shape
            or z.shape != yhat.shape
            or not fusable(z, yhat, y)
            or (softmax_ce and z.shape[1] > _kernels.MAX_SOFTMAX_WIDTH)
        ):
            return super().output_loss_gradient(z, yhat, y, loss, activation, denom)
        self._activate()
        cp = self._cp
        rows, cols = z.shape
        dtype = z.dtype.name
        real = z.dtype.type
        dz = cp.empty_like(z)
        value = cp.empty((), dtype=z.dtype)
        inv_denom = real(1.0 / denom)
        work = rows if softmax_ce else rows * cols  # one thread per row, or per element
        blocks = 1 if rows * cols <= self._one_block_elements else self._launch.blocks(work)
        dst = value if blocks == 1 else cp.empty(blocks, dtype=z.dtype)
        if softmax_ce:
            kernel = self._launch.kernel(
                ("outgrad_ce", dtype), lambda: _kernels.softmax_cross_entropy_source(dtype)
            )
            args = (z, yhat, y, dz, dst, np.int64(rows), np.int64(cols), inv_denom)
        else:
            kernel = self._launch.kernel(
                ("outgrad", name, act, dtype),
                lambda: _kernels.output_gradient_source(name, act, dtype),
            )
            args = (z, yhat, y, dz, dst, np.int64(rows * cols), inv_denom)
        kernel((blocks,), (_kernels.BLOCK,), args)
        if blocks > 1:
            self._launch.sum_segments(dst, value, 1, blocks)
        return value, dz

    # -- optimizers -----------------------------------------------------------------------------
    def sgd_update(
        self,
        params: list[Array],
        grads: list[Array],
        velocity: list[Array] | None,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> tuple[list[Array], list[Array] | None]:
        """SGD in place, one launch for all tensors; returns the same lists."""
        lists = (params, grads) if velocity is None else (params, grads, velocity)
        if not updatable(self._cp.ndarray, *lists):
            return super().sgd_update(params, grads, velocity, lr, momentum, nesterov)
        self._activate()
        real = params[0].dtype.type
        if velocity is None:
            variant, scalars = "plain", (real(lr),)
        else:
            variant = "nesterov" if nesterov else "momentum"
            scalars = (real(lr), real(momentum))
        self._launch.multi_tensor(
            ("sgd", variant), lambda s, d: _kernels.sgd_source(s, d, variant), lists, scalars
        )
        return params, velocity

    def adam_update(
        self,
        params: list[Array],
        grads: list[Array],
        m: list[Array],
        v: list[Array],
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
    ) -> tuple[list[Array], list[Array], list[Array]]:
        """Adam in place, one launch for all tensors; returns the same lists."""
        if not updatable(self._cp.ndarray, params, grads, m, v):
            return super().adam_update(params, grads, m, v, step, lr, beta1, beta2, eps)
        self._activate()
        real = params[0].dtype.type
        # Scalars computed in double precision on the host, as the generic code does.
        c1, c2 = adam_bias_corrections(beta1, beta2, step)
        scalars = (
            real(lr),
            real(beta1),
            real(1.0 - beta1),
            real(beta2),
            real(1.0 - beta2),
            real(eps),
            real(c1),
            real(c2),
        )
        self._launch.multi_tensor(("adam",), _kernels.adam_source, (params, grads, m, v), scalars)
        return params, m, v

    def optimizer_update(
        self,
        row: OptimizerRow,
        params: list[Array],
        grads: list[Array],
        state: list[list[Array]],
        scalars: tuple[float, ...],
        tensor_scalars: list[tuple[float, ...]],
    ) -> tuple[list[Array], list[list[Array]]]:
        """A rule of the optimizer table in place, one launch per pass for all tensors."""
        lists = (params, grads, *state)
        if not updatable(self._cp.ndarray, *lists):
            return super().optimizer_update(row, params, grads, state, scalars, tensor_scalars)
        self._activate()
        table_update(self._launch, self._cp, row, lists, scalars, tensor_scalars)
        return params, state

    # -- whole networks and big batches ---------------------------------------------------------
    def fused_network(self, spec: NetworkSpec, tier: str | None = None) -> CupyFusedNetwork | None:
        """The one-kernel forward + backward for small networks (widths <= 32), else ``None``.

        ``tier`` is the one :meth:`choose_tier` gives (``"fused"`` or ``"layers"``), or
        ``None`` for that choice."""
        if tier == "layers":
            return None
        if spec not in self._network_kernels:
            ok = self._use_fused and _kernels.fused_supported(
                tuple(spec.widths), tuple(spec.activations), spec.loss, spec.dtype
            )
            self._network_kernels[spec] = (
                CupyFusedNetwork(spec, self._launch, self._activate) if ok else None
            )
        return self._network_kernels[spec]

    def choose_tier(self, spec: NetworkSpec, job: Any = None) -> tuple[str, str]:
        """``"fused"`` (one kernel for the whole network) where :meth:`fused_network` has
        one for ``spec``, else ``"layers"``: a property of the spec alone."""
        if self.fused_network(spec) is not None:
            return "fused", "the whole-network CUDA kernel"
        return "layers", "the per-layer hooks"

    def max_batch_rows(self, spec: NetworkSpec) -> int | None:
        """Rows of one training micro-batch that fit in the GPU's free memory.

        Estimated from the free device memory (plus what CuPy's pool holds unused) and the
        per-row footprint of a step: the forward trace, ``dz`` and ``da`` of a layer, with a
        margin. ``None`` for networks the fused kernel trains, which need no memory per row.
        """
        if self._max_rows_override is not None:
            return self._max_rows_override
        if self.fused_network(spec) is not None:
            return None
        now = time.monotonic()
        cached = self._rows_cache.get(spec)
        if cached is not None and now - cached[1] < _MEMORY_ESTIMATE_TTL:
            return cached[0]
        free, _total = self._cp.cuda.Device(self.device_id).mem_info
        available = int(free) + int(self._pool.free_bytes())
        itemsize = np.dtype(spec.dtype).itemsize
        widths = [int(w) for w in spec.widths]
        # The forward trace (z and a per layer), then per layer dz, da_prev and a temporary.
        per_row = itemsize * (2 * sum(widths[1:]) + 3 * max(widths))
        # Gradients of two micro-batches being summed, plus room for cuBLAS workspaces and
        # fragmentation of the pool.
        reserve = itemsize * _kernels.n_parameters(tuple(widths)) * 4 + (256 << 20)
        rows = int(max(available - reserve, 0) * 0.8 // per_row)
        rows = max(rows, 1)
        if rows > 8192:
            rows -= rows % 1024  # whole tiles for the GEMMs
        self._rows_cache[spec] = (rows, now)
        return rows

    def warmup(self, spec: NetworkSpec) -> None:
        """Compile (or load from CuPy's cache) every kernel a training step of ``spec`` uses.

        Runs the hooks a step runs (the fused kernel or every layer's, then each optimizer
        update) on a tiny batch, through the backend alone: nothing above the backends is
        imported.
        """
        widths = tuple(int(w) for w in spec.widths)
        rng = np.random.default_rng(0)
        n = 8
        X = rng.standard_normal((n, widths[0]))
        # Targets in their device form (one-hot rows for cross-entropy), ready for the hooks.
        if spec.loss == "cross_entropy":
            y = np.eye(widths[-1])[rng.integers(0, widths[-1], size=n)]
        elif spec.loss in ("binary_cross_entropy", "poisson"):
            y = rng.integers(0, 2, size=(n, widths[-1])).astype(float)
        else:
            y = rng.standard_normal((n, widths[-1]))
        Xd, yd = self.asarray(X, spec.dtype), self.asarray(y, spec.dtype)
        params = [
            self.asarray(rng.standard_normal(slot.shape) * 0.1, spec.dtype)
            for slot in param_layout(widths)
        ]
        fused = self.fused_network(spec)
        if fused is not None:
            _, grads = fused.loss_and_gradients(params, Xd, yd, float(n))
            fused.forward(params, Xd)
        else:
            acts = [get_activation(a) for a in spec.activations]
            loss = get_loss(spec.loss)
            _, grads = layer_loop.loss_and_gradients(self, params, acts, loss, Xd, yd, float(n))
        zeros = [self.xp.zeros_like(p) for p in params]
        self.adam_update(
            [self.copy(p) for p in params], grads, [self.copy(z) for z in zeros],
            [self.copy(z) for z in zeros], 1, 1e-3, 0.9, 0.999, 1e-8,
        )  # fmt: skip
        velocity = [self.copy(z) for z in zeros]
        self.sgd_update([self.copy(p) for p in params], grads, velocity, 1e-3, 0.9, False)
        self.sgd_update([self.copy(p) for p in params], grads, None, 1e-3, 0.0, False)
        self.synchronize()
