"""The CuPy backend: the generic array-API equations on an NVIDIA GPU, plus fused CUDA kernels.

``xp`` is ``array_api_compat.cupy``, so every generic hook of :class:`~.base.Backend` runs on
the GPU unchanged. The hot hooks are overridden with kernels from :mod:`._cupy_kernels`
(compiled by NVRTC on first use and cached on disk by CuPy):

- ``dense_forward``: cuBLAS GEMM, then bias + activation in one pass (softmax per row);
- ``dense_backward``: ``dz = grad * f'(z)`` and the bias gradient's column sums in one pass,
  then two GEMMs (no ``da_prev`` for the first layer);
- ``output_loss_gradient``: ``dz`` and the loss sum of the matched output/loss pairs together;
- ``sgd_update`` / ``adam_update``: one in-place launch over all parameter tensors;
- ``fused_network``: for small networks (every width <= 32), forward, loss and backward of a
  whole batch in one kernel, one thread per sample, plus one reduction launch.

Anything else (another dtype, a non-contiguous array, a wide softmax) falls back to the generic
code. Data crosses between host and device only in ``asarray``/``index_array`` and
``to_numpy``; a training step launches kernels only, and its temporaries come from and go back
to CuPy's memory pool, so after the first step it allocates no new device memory.

CuPy is imported when the backend starts, never by ``import mlp_accel``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..ops.layout import param_layout
from ..ops.table import Activation, Loss, get_activation, get_loss
from . import _cupy_kernels
from .base import IDENTITY, Backend, BackendUnavailableError, NetworkSpec

__all__ = ["CupyBackend", "INSTALL_HINT"]

Array = Any

#: How to install CuPy, for the error raised where it is missing.
INSTALL_HINT = "pip install 'mlp-accel[cuda13]' or 'mlp-accel[cuda12]'"
_PREFIX = "backend 'cupy' is unavailable: "
# Tensors per launch of the multi-tensor optimizer kernels (each adds 2-4 pointer arguments;
# CUDA allows 4 KiB of kernel arguments on every architecture).
_MAX_TENSORS_PER_LAUNCH = 64
# Seconds a free-memory estimate of max_batch_rows stays valid.
_MEMORY_ESTIMATE_TTL = 1.0


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _import_cupy() -> Any:
    """Import CuPy or raise :class:`BackendUnavailableError` saying why it cannot be used."""
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "cupy":
            raise BackendUnavailableError(
                f"{_PREFIX}CuPy is not installed ({INSTALL_HINT})"
            ) from exc
        raise BackendUnavailableError(f"{_PREFIX}CuPy failed to import: {exc}") from exc
    except Exception as exc:  # a broken install, or a CUDA library that does not load
        raise BackendUnavailableError(
            f"{_PREFIX}CuPy failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return cupy


def _probe_device(cupy: Any, device_id: int) -> None:
    """Check that GPU ``device_id`` exists and runs a kernel; raise saying why not."""
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, driver too old for this CUDA, no device node
        raise BackendUnavailableError(
            f"{_PREFIX}no usable GPU: the CUDA driver or runtime failed "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if count < 1:
        raise BackendUnavailableError(f"{_PREFIX}no GPU found (CUDA reports 0 devices)")
    if not 0 <= device_id < count:
        raise BackendUnavailableError(
            f"{_PREFIX}GPU {device_id} does not exist; this machine has {count} "
            f"(use a device from 0 to {count - 1})"
        )
    try:
        # A real allocation, kernel compilation (NVRTC) and launch, and a copy back: the
        # failures a bare device count does not reveal (missing NVRTC, unsupported GPU).
        with cupy.cuda.Device(device_id):
            value = (cupy.arange(4, dtype=cupy.float32) * 2).sum().item()
    except Exception as exc:
        raise BackendUnavailableError(
            f"{_PREFIX}GPU {device_id} does not work: {type(exc).__name__}: {exc}"
        ) from exc
    if value != 12.0:
        raise BackendUnavailableError(f"{_PREFIX}GPU {device_id} computed 2*(0+1+2+3) = {value}")


def _linalg_module() -> Any:
    """CuPy's GEMM module, whose compute type decides TF32 (private API: may be missing)."""
    try:
        from cupy._core import _routines_linalg
    except Exception:
        return None
    if not hasattr(_routines_linalg, "set_compute_type"):
        return None
    return _routines_linalg


# The TF32 setting last applied to CuPy's GEMMs. CuPy keeps it per process, not per device or
# backend; backends with different settings re-apply theirs as they become active.
_tf32_applied: bool | None = None


def _set_tf32(enabled: bool) -> bool:
    """Let float32 GEMMs use TF32 tensor cores, or keep them in full float32.

    Returns whether the setting could be applied: it goes through CuPy's compute-type switch
    (a private API); without it CuPy follows ``CUPY_TF32``, which the user sets before
    starting (this package never writes the environment).
    """
    global _tf32_applied
    linalg = _linalg_module()
    if linalg is None:
        return False
    tf32 = getattr(linalg, "COMPUTE_TYPE_TF32", 7)
    default = getattr(linalg, "COMPUTE_TYPE_DEFAULT", 1)
    linalg.set_compute_type(np.float32, tf32 if enabled else default)
    _tf32_applied = enabled
    return True


def _tf32_active() -> bool | None:
    """Whether CuPy's float32 GEMMs use TF32 now (``None`` if CuPy does not say)."""
    linalg = _linalg_module()
    if linalg is None or not hasattr(linalg, "get_compute_type"):
        return None
    return int(linalg.get_compute_type(np.float32)) == int(getattr(linalg, "COMPUTE_TYPE_TF32", 7))


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _c_contiguous(x: Any) -> bool:
    # CuPy keeps the flag as an attribute; reading it builds no Flags object (this runs for
    # every array of every hook call).
    flag = getattr(x, "_c_contiguous", None)
    return bool(x.flags.c_contiguous) if flag is None else bool(flag)


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
        if device is None:
            text = os.environ.get("MLP_ACCEL_DEVICE", "0").strip() or "0"
            try:
                device = int(text)
            except ValueError:
                raise BackendUnavailableError(
                    f"{_PREFIX}MLP_ACCEL_DEVICE must be a GPU index, got {text!r}"
                ) from None
        if isinstance(device, bool) or not isinstance(device, int | np.integer):
            raise TypeError(f"device must be a GPU index, got {device!r}")
        device = int(device)
        if device < 0:
            raise ValueError(f"device must be a GPU index (0, 1, ...), got {device}")
        if tf32 is not None and not isinstance(tf32, bool | np.bool_):
            raise TypeError(f"tf32 must be True or False, got {tf32!r}")
        cupy = _import_cupy()
        _probe_device(cupy, device)
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
        self._sm_count = max(1, int(props.get("multiProcessorCount", 1)))
        self.tf32 = _env_flag("MLP_ACCEL_TF32") if tf32 is None else bool(tf32)
        if not _set_tf32(self.tf32) and self.tf32:
            warnings.warn(
                "this CuPy offers no switch for TF32: float32 products follow CUPY_TF32 "
                "(set it to 1 before starting Python)",
                RuntimeWarning,
                stacklevel=3,
            )
        self._pool = cupy.get_default_memory_pool()
        self._kernels: dict[Any, Any] = {}
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
        if _tf32_applied is not None and _tf32_applied is not self.tf32:
            _set_tf32(self.tf32)

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

        Host batches go through two page-locked staging buffers and are copied on a second
        stream into two device buffers; the compute stream waits on each copy's event (not
        the host), and a buffer is refilled only after the step that read it has run. The
        batches yielded are views of those buffers, valid until the next batch is requested.
        """
        self._activate()
        cp = self._cp
        copy_stream = cp.cuda.Stream(non_blocking=True)
        compute_stream = cp.cuda.get_current_stream()
        slots = [_StagingSlot(cp, dtype), _StagingSlot(cp, dtype)]

        def start(slot: _StagingSlot, batch: tuple[Any, Any]) -> tuple[Array, Array]:
            if slot.grow(*(np.shape(a) for a in batch)):
                # Fresh device memory may be a pool block the compute stream still reads:
                # copy into it only after everything queued there so far.
                copy_stream.wait_event(compute_stream.record())
            elif slot.consumed is not None:
                copy_stream.wait_event(slot.consumed)
            if slot.copied is not None:
                slot.copied.synchronize()  # the pinned buffer is free again
            views = []
            for k, host in enumerate(batch):
                host = np.ascontiguousarray(host, dtype=dtype)
                pinned = slot.pinned[k][: host.size].reshape(host.shape)
                pinned[...] = host
                device = slot.device[k][: host.shape[0]]
                device.set(pinned, stream=copy_stream)
                views.append(device)
            slot.copied = copy_stream.record()
            return views[0], views[1]

        batches = iter(host_batches)
        batch = next(batches, None)
        if batch is None:
            return
        index = 0
        current = start(slots[0], batch)
        while True:
            batch = next(batches, None)
            upcoming = start(slots[1 - index], batch) if batch is not None else None
            compute_stream.wait_event(slots[index].copied)
            yield current
            slots[index].consumed = compute_stream.record()
            if upcoming is None:
                break
            current, index = upcoming, 1 - index

    def describe(self) -> dict[str, str]:
        """GPU name, memory, compute capability, CUDA and CuPy versions, TF32 state."""
        rt, props = self._runtime, self._props
        name = props.get("name", b"unknown")
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        free, total = self._cp.cuda.Device(self.device_id).mem_info
        tf32 = _tf32_active()
        tf32 = self.tf32 if tf32 is None else tf32
        return {
            "device": self.device,
            "gpu": str(name),
            "memory": f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)",
            "compute capability": f"{props.get('major', '?')}.{props.get('minor', '?')}",
            "cuda runtime": _cuda_version(int(rt.runtimeGetVersion())),
            "cuda driver": _cuda_version(int(rt.driverGetVersion())),
            "cupy": str(self._cp.__version__),
            "tf32": "on" if tf32 else "off",
        }

    # -- kernels ------------------------------------------------------------------------------
    def _kernel(self, key: Any, make: Any) -> Any:
        """The compiled kernel for ``key``; ``make()`` returns its ``(source, name)``."""
        kernel = self._kernels.get(key)
        if kernel is None:
            source, name = make()
            kernel = self._cp.RawKernel(source, name)
            self._kernels[key] = kernel
        return kernel

    def _blocks(self, work: int, per_sm: int = 8) -> int:
        """Blocks of ``BLOCK`` threads for ``work`` items: enough to fill the GPU, no more."""
        return max(1, min(_ceil_div(work, _cupy_kernels.BLOCK), self._sm_count * per_sm))

    def _sum_segments(self, src: Array, out: Array, n_segments: int, seglen: int) -> None:
        dtype = out.dtype.name
        kernel = self._kernel(
            ("sum_segments", dtype), lambda: _cupy_kernels.sum_segments_source(dtype)
        )
        threads = 32 if seglen <= 256 else _cupy_kernels.BLOCK
        kernel((n_segments,), (threads,), (src, out, np.int64(seglen)))

    @staticmethod
    def _fusable(*arrays: Array) -> bool:
        """Same float32/float64 dtype and C-contiguous: what the fused kernels assume."""
        dtype = arrays[0].dtype
        if dtype.char not in "fd":
            return False
        return all(a.dtype == dtype and _c_contiguous(a) for a in arrays)

    # -- hot hooks ----------------------------------------------------------------------------
    def dense_forward(
        self, a_prev: Array, W: Array, b: Array, activation: Activation
    ) -> tuple[Array, Array]:
        act = activation.name
        if (
            (not _cupy_kernels.is_elementwise(act) and act != "softmax")
            or a_prev.dtype != W.dtype
            or b.ndim != 1
            or b.shape[0] != W.shape[1]
            or b.dtype != W.dtype
            or b.dtype.char not in "fd"
            or not _c_contiguous(b)  # W may have any layout: cuBLAS takes it as it is
        ):
            return super().dense_forward(a_prev, W, b, activation)
        self._activate()
        cp = self._cp
        z = a_prev @ W
        rows, cols = z.shape
        dtype = z.dtype.name
        if act == "softmax":
            if cols > _cupy_kernels.MAX_SOFTMAX_WIDTH:
                z += b
                return z, activation.forward(z, xp=self.xp)
            a = cp.empty_like(z)
            kernel = self._kernel(
                ("bias_softmax", dtype), lambda: _cupy_kernels.bias_softmax_source(dtype)
            )
            kernel(
                (self._blocks(rows),),
                (_cupy_kernels.BLOCK,),
                (z, b, a, np.int64(rows), np.int64(cols)),
            )
            return z, a
        kernel = self._kernel(
            ("bias_act", act, dtype), lambda: _cupy_kernels.bias_activation_source(act, dtype)
        )
        grid = (self._blocks(rows * cols),)
        if act == "identity":
            kernel(grid, (_cupy_kernels.BLOCK,), (z, b, np.int64(rows), np.int64(cols)))
            return z, z
        a = cp.empty_like(z)
        kernel(grid, (_cupy_kernels.BLOCK,), (z, b, a, np.int64(rows), np.int64(cols)))
        return z, a

    def _colsum_grid(self, rows: int, cols: int) -> tuple[int, int]:
        """``(rows_per_block, row_chunks)`` of the column-sum kernels: about 8 blocks per SM."""
        if rows <= self._one_chunk_rows:
            return max(8, _ceil_div(rows, 8) * 8), 1
        col_tiles = _ceil_div(cols, _cupy_kernels.COLSUM_BLOCK[0])
        chunks = max(1, min(_ceil_div(self._sm_count * 8, col_tiles), _ceil_div(rows, 64)))
        rows_per_block = _ceil_div(_ceil_div(rows, chunks), 8) * 8
        return rows_per_block, _ceil_div(rows, rows_per_block)

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
        if not _cupy_kernels.is_elementwise(act) or grad.ndim != 2:
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        arrays = (grad,) if act == "identity" else (grad, z, a)
        if not self._fusable(*arrays) or grad.dtype != W.dtype or a_prev.dtype != W.dtype:
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        self._activate()
        cp = self._cp
        rows, cols = grad.shape
        dtype = grad.dtype.name
        rows_per_block, chunks = self._colsum_grid(rows, cols)
        db = cp.empty(cols, dtype=grad.dtype)
        # With one row chunk the kernel writes the column sums straight into db.
        dst = db if chunks == 1 else cp.empty(cols * chunks, dtype=grad.dtype)
        grid = (_ceil_div(cols, _cupy_kernels.COLSUM_BLOCK[0]), chunks)
        tail = (np.int64(rows), np.int64(cols), np.int64(rows_per_block))
        kernel = self._kernel(
            ("colsum", act, dtype), lambda: _cupy_kernels.colsum_source(act, dtype)
        )
        if act == "identity":
            dz = grad
            kernel(grid, _cupy_kernels.COLSUM_BLOCK, (grad, dst, *tail))
        else:
            dz = cp.empty_like(grad)
            kernel(grid, _cupy_kernels.COLSUM_BLOCK, (grad, z, a, dz, dst, *tail))
        if chunks > 1:
            self._sum_segments(dst, db, cols, chunks)
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
            and _cupy_kernels.is_elementwise(act)
        )
        softmax_ce = name == "cross_entropy" and act == "softmax"
        if (
            not (elementwise or softmax_ce)
            or z.ndim != 2
            or z.shape != y.shape
            or z.shape != yhat.shape
            or not self._fusable(z, yhat, y)
            or (softmax_ce and z.shape[1] > _cupy_kernels.MAX_SOFTMAX_WIDTH)
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
        if softmax_ce:
            blocks = 1 if rows * cols <= self._one_block_elements else self._blocks(rows)
            dst = value if blocks == 1 else cp.empty(blocks, dtype=z.dtype)
            kernel = self._kernel(
                ("outgrad_ce", dtype), lambda: _cupy_kernels.softmax_cross_entropy_source(dtype)
            )
            args = (z, yhat, y, dz, dst, np.int64(rows), np.int64(cols), inv_denom)
        else:
            blocks = 1 if rows * cols <= self._one_block_elements else self._blocks(rows * cols)
            dst = value if blocks == 1 else cp.empty(blocks, dtype=z.dtype)
            kernel = self._kernel(
                ("outgrad", name, act, dtype),
                lambda: _cupy_kernels.output_gradient_source(name, act, dtype),
            )
            args = (z, yhat, y, dz, dst, np.int64(rows * cols), inv_denom)
        kernel((blocks,), (_cupy_kernels.BLOCK,), args)
        if blocks > 1:
            self._sum_segments(dst, value, 1, blocks)
        return value, dz

    # -- optimizers -----------------------------------------------------------------------------
    def _updatable(self, *lists: list[Array]) -> bool:
        """Whether the multi-tensor kernels apply: matching C-contiguous float arrays."""
        n = len(lists[0])
        if n == 0 or any(lst is None or len(lst) != n for lst in lists):
            return False
        ndarray = self._cp.ndarray
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
                    or not _c_contiguous(x)
                ):
                    return False
        return True

    def _multi_tensor(
        self, kind: tuple, make: Any, lists: tuple[list[Array], ...], scalars: tuple
    ) -> None:
        """Launch a multi-tensor kernel over ``lists`` (parallel lists of tensors), in groups."""
        dtype = lists[0][0].dtype.name
        n = len(lists[0])
        for start in range(0, n, _MAX_TENSORS_PER_LAUNCH):
            group = range(start, min(n, start + _MAX_TENSORS_PER_LAUNCH))
            sizes = tuple(int(lists[0][i].size) for i in group)
            kernel = self._kernel((*kind, sizes, dtype), lambda s=sizes: make(s, dtype))
            args = [lst[i] for i in group for lst in lists]
            kernel((self._blocks(sum(sizes)),), (_cupy_kernels.BLOCK,), (*args, *scalars))

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
        if not self._updatable(*lists):
            return super().sgd_update(params, grads, velocity, lr, momentum, nesterov)
        self._activate()
        real = params[0].dtype.type
        if velocity is None:
            variant, scalars = "plain", (real(lr),)
        else:
            variant = "nesterov" if nesterov else "momentum"
            scalars = (real(lr), real(momentum))
        self._multi_tensor(
            ("sgd", variant), lambda s, d: _cupy_kernels.sgd_source(s, d, variant), lists, scalars
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
        if not self._updatable(params, grads, m, v):
            return super().adam_update(params, grads, m, v, step, lr, beta1, beta2, eps)
        self._activate()
        real = params[0].dtype.type
        # Scalars computed in double precision on the host, as the generic code does.
        scalars = (
            real(lr),
            real(beta1),
            real(1.0 - beta1),
            real(beta2),
            real(1.0 - beta2),
            real(eps),
            real(1.0 - beta1**step),
            real(1.0 - beta2**step),
        )
        self._multi_tensor(("adam",), _cupy_kernels.adam_source, (params, grads, m, v), scalars)
        return params, m, v

    # -- whole networks and big batches ---------------------------------------------------------
    def fused_network(self, spec: NetworkSpec) -> _CupyFusedNetwork | None:
        """The one-kernel forward + backward for small networks (widths <= 32), else ``None``."""
        if spec not in self._network_kernels:
            ok = self._use_fused and _cupy_kernels.fused_supported(
                tuple(spec.widths), tuple(spec.activations), spec.loss, spec.dtype
            )
            self._network_kernels[spec] = _CupyFusedNetwork(self, spec) if ok else None
        return self._network_kernels[spec]

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
        reserve = itemsize * _cupy_kernels.n_parameters(tuple(widths)) * 4 + (256 << 20)
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
            grads = self._warmup_layers(spec, params, Xd, yd, n)
        zeros = [self.xp.zeros_like(p) for p in params]
        self.adam_update(
            [self.copy(p) for p in params], grads, [self.copy(z) for z in zeros],
            [self.copy(z) for z in zeros], 1, 1e-3, 0.9, 0.999, 1e-8,
        )  # fmt: skip
        velocity = [self.copy(z) for z in zeros]
        self.sgd_update([self.copy(p) for p in params], grads, velocity, 1e-3, 0.9, False)
        self.sgd_update([self.copy(p) for p in params], grads, None, 1e-3, 0.0, False)
        self.synchronize()

    def _warmup_layers(
        self, spec: NetworkSpec, params: list[Array], X: Array, y: Array, n: int
    ) -> list[Array]:
        """One forward and backward pass through the layer hooks; returns the gradients."""
        acts = [get_activation(a) for a in spec.activations]
        trace, a = [], X
        for k, act in enumerate(acts):
            z, a_next = self.dense_forward(a, params[2 * k], params[2 * k + 1], act)
            trace.append((a, z, a_next))
            a = a_next
        _, grad = self.output_loss_gradient(
            trace[-1][1], a, y, get_loss(spec.loss), acts[-1], float(n)
        )
        grads: list[Array] = [None] * len(params)
        for k in range(len(acts) - 1, -1, -1):
            a_prev, z, a_k = trace[k]
            act = IDENTITY if k == len(acts) - 1 else acts[k]
            dW, db, grad = self.dense_backward(grad, z, a_k, a_prev, params[2 * k], act, k > 0)
            grads[2 * k], grads[2 * k + 1] = dW, db
        return grads


class _StagingSlot:
    """One stage of :meth:`CupyBackend.stream_to_device`: a pinned host buffer and a device
    buffer for X and for y, grown to the largest batch seen, with the events that guard them."""

    def __init__(self, cp: Any, dtype: str) -> None:
        self.cp, self.dtype = cp, np.dtype(dtype)
        self.pinned: list[np.ndarray] = []
        self.device: list[Any] = []
        self.shapes: list[tuple[int, ...]] = []
        self.copied: Any = None  # the copy out of the pinned buffers has finished
        self.consumed: Any = None  # the step that read the device buffers has run

    def grow(self, *shapes: tuple[int, ...]) -> bool:
        """Make room for arrays of ``shapes``; True when device memory was (re)allocated."""
        if self.shapes and all(
            len(s) == len(o) and s[0] <= o[0] and s[1:] == o[1:]
            for s, o in zip(shapes, self.shapes)
        ):
            return False
        if self.copied is not None:
            self.copied.synchronize()
        cp = self.cp
        self.pinned, self.device = [], []
        for shape in shapes:
            size = int(np.prod(shape))
            memory = cp.cuda.alloc_pinned_memory(max(size, 1) * self.dtype.itemsize)
            self.pinned.append(np.frombuffer(memory, self.dtype, size))
            self.device.append(cp.empty(shape, dtype=self.dtype))
        self.shapes = [tuple(s) for s in shapes]
        self.copied = self.consumed = None
        return True


class _CupyFusedNetwork:
    """Forward + loss + backward of a small network in one kernel (see ``_cupy_kernels``).

    One thread per sample keeps activations and gradient sums in registers; each block
    writes partial sums, and one more launch adds them into a flat ``[W1, b1, ..., loss]``
    vector whose views are the gradients.
    """

    def __init__(self, backend: CupyBackend, spec: NetworkSpec) -> None:
        self._backend = backend
        self.spec = spec
        widths = tuple(int(w) for w in spec.widths)
        activations = tuple(spec.activations)
        dtype = spec.dtype
        self._dtype = np.dtype(dtype)
        self._real = self._dtype.type
        self._n_out = widths[-1]
        slots = param_layout(widths)
        self._layout = [(slot.offset, slot.end, slot.shape) for slot in slots]
        self._n_params = slots[-1].end
        self._train = backend._kernel(
            ("fused_train", widths, activations, spec.loss, dtype),
            lambda: _cupy_kernels.fused_train_source(widths, activations, spec.loss, dtype),
        )
        self._forward = backend._kernel(
            ("fused_forward", widths, activations, dtype),
            lambda: _cupy_kernels.fused_forward_source(widths, activations, dtype),
        )

    def _c_array(self, x: Array) -> Array:
        """``x`` as a C-contiguous array of the network's dtype (itself when it already is)."""
        if x.dtype == self._dtype and _c_contiguous(x):
            return x
        return self._backend._cp.ascontiguousarray(x, dtype=self._dtype)

    def _inputs(self, params: list[Array], X: Array) -> tuple[Array, list[Array]]:
        return self._c_array(X), [self._c_array(p) for p in params]

    def loss_and_gradients(
        self, params: list[Array], X: Array, y: Array, denom: float
    ) -> tuple[Array, list[Array]]:
        """Loss summed over the batch and gradients of ``loss_sum / denom``."""
        backend = self._backend
        backend._activate()
        cp = backend._cp
        X, params = self._inputs(params, X)
        y = self._c_array(y)
        n = int(X.shape[0])
        n_acc = self._n_params + 1
        # Four blocks per SM: threads take several samples each when the batch is large,
        # which amortizes the block's final reduction of its n_acc sums.
        blocks = backend._blocks(n, per_sm=4)
        out = cp.empty(n_acc, dtype=self._dtype)
        dst = out if blocks == 1 else cp.empty(n_acc * blocks, dtype=self._dtype)
        self._train(
            (blocks,),
            (_cupy_kernels.BLOCK,),
            (X, y, *params, dst, np.int64(n), self._real(1.0 / denom)),
        )
        if blocks > 1:
            backend._sum_segments(dst, out, n_acc, blocks)
        grads = [
            out[start:stop] if len(shape) == 1 else out[start:stop].reshape(shape)
            for start, stop, shape in self._layout
        ]
        loss_sum = out[self._n_params :].reshape(())  # a 0-d device array, not a scalar
        return loss_sum, grads

    def forward(self, params: list[Array], X: Array) -> Array:
        """The network's outputs after the output activation."""
        backend = self._backend
        backend._activate()
        X, params = self._inputs(params, X)
        n = int(X.shape[0])
        out = backend._cp.empty((n, self._n_out), dtype=self._dtype)
        self._forward((backend._blocks(n),), (_cupy_kernels.BLOCK,), (X, *params, out, np.int64(n)))
        return out
