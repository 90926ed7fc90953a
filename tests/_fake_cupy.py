"""A CPU stand-in for the part of CuPy that the cupy backend uses, for machines without a GPU.

Arrays are NumPy arrays; ``RawKernel`` runs the CUDA C source in :mod:`_cuda_emulator`. Arrays
this module allocates sit between guard values, and every launch checks the guards of its array
arguments afterwards, so a kernel writing out of bounds fails the test. Install it with
:func:`install` (a pytest ``monkeypatch``), which also makes ``array_api_compat.cupy`` the NumPy
namespace.
"""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any

import numpy as np

from . import _cuda_emulator as emulator

__version__ = "0.0-emulated"
ndarray = np.ndarray
float32, float64, int64 = np.float32, np.float64, np.int64

_PAD = 64
_GUARD = -1234.5
# Guarded buffers by id (arrays are unhashable, so no WeakSet), weakly referenced.
_guarded: dict[int, weakref.ref] = {}
launches: list[str] = []


def _new(shape: Any, dtype: Any) -> np.ndarray:
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    if dtype.kind != "f":
        return np.empty(shape, dtype)
    buf = np.empty(size + 2 * _PAD, dtype)
    buf[:_PAD] = _GUARD
    buf[_PAD + size :] = _GUARD
    buf[_PAD : _PAD + size] = np.nan  # uninitialized memory: NaN shows up if read
    _guarded[id(buf)] = weakref.ref(buf)
    return buf[_PAD : _PAD + size].reshape(shape)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _check_guards(args: tuple, name: str) -> None:
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            root = _root(a)
            ref = _guarded.get(id(root))
            if ref is not None and ref() is root:
                if not (np.all(root[:_PAD] == _GUARD) and np.all(root[-_PAD:] == _GUARD)):
                    raise AssertionError(f"kernel {name} wrote out of bounds of argument {i}")


def empty(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    return _new(shape, dtype)


def empty_like(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    return _new(a.shape, a.dtype if dtype is None else dtype)


def zeros(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    out = _new(shape, dtype)
    out[...] = 0
    return out


def zeros_like(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    return zeros(a.shape, a.dtype if dtype is None else dtype)


def ascontiguousarray(a: Any, dtype: Any = None) -> np.ndarray:
    a = np.asarray(a)
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if a.flags.c_contiguous and a.dtype == dtype:
        return a  # CuPy returns the array itself here too
    out = _new(a.shape, dtype)
    out[...] = a
    return out


def asarray(a: Any, dtype: Any = None) -> np.ndarray:
    src = np.asarray(a, dtype=dtype)
    out = _new(src.shape, src.dtype)
    out[...] = src
    return out


def asnumpy(a: Any) -> np.ndarray:
    return np.array(a, copy=True)


def take(a: np.ndarray, index: np.ndarray, axis: int | None = None) -> np.ndarray:
    return np.ascontiguousarray(np.take(a, index, axis=axis))


def arange(*args: Any, **kwargs: Any) -> np.ndarray:
    return np.arange(*args, **kwargs)


class RawKernel:
    """Compiles on first call, like CuPy's, but for the CPU emulator."""

    def __init__(self, code: str, name: str, options: tuple = ()) -> None:
        self.code, self.name, self.options = code, name, options

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0) -> None:
        launches.append(self.name)
        emulator.launch(self.code, self.name, grid, block, tuple(args))
        _check_guards(tuple(args), self.name)


class _Runtime:
    CUDARuntimeError = RuntimeError

    def __init__(self) -> None:
        self.device_count = 1
        self.current = 0
        self.fail: Exception | None = None

    def getDeviceCount(self) -> int:
        if self.fail is not None:
            raise self.fail
        return self.device_count

    def getDevice(self) -> int:
        return self.current

    def setDevice(self, device: int) -> None:
        self.current = device

    def getDeviceProperties(self, device: int) -> dict[str, Any]:
        # One SM keeps emulated grids small; batches of a few hundred rows still need
        # several blocks, so the multi-block reductions run.
        return {
            "name": b"Emulated GPU",
            "totalGlobalMem": 8 << 30,
            "multiProcessorCount": 1,
            "major": 9,
            "minor": 0,
        }

    def runtimeGetVersion(self) -> int:
        return 13000

    def driverGetVersion(self) -> int:
        return 13000


runtime = _Runtime()


class Device:
    def __init__(self, device: int | None = None) -> None:
        self.id = runtime.current if device is None else int(device)

    def use(self) -> None:
        runtime.setDevice(self.id)

    def synchronize(self) -> None:
        pass

    @property
    def mem_info(self) -> tuple[int, int]:
        return 6 << 30, 8 << 30

    def __enter__(self) -> Device:
        self._prev = runtime.current
        runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        runtime.setDevice(self._prev)


class _Pool:
    def free_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0


_pool = _Pool()


def get_default_memory_pool() -> _Pool:
    return _pool


cuda = types.SimpleNamespace(runtime=runtime, Device=Device)

# CuPy's GEMM compute-type switch (``cupy._core._routines_linalg``), process state as in CuPy:
# the backend's TF32 option goes through it.
_routines_linalg = types.ModuleType("cupy._core._routines_linalg")
_routines_linalg.COMPUTE_TYPE_DEFAULT, _routines_linalg.COMPUTE_TYPE_TF32 = 1, 7
compute_types: dict[np.dtype, int] = {}


def _set_compute_type(dtype: Any, compute_type: int) -> None:
    compute_types[np.dtype(dtype)] = int(compute_type)


def _get_compute_type(dtype: Any) -> int:
    return compute_types.get(np.dtype(dtype), _routines_linalg.COMPUTE_TYPE_DEFAULT)


_routines_linalg.set_compute_type = _set_compute_type
_routines_linalg.get_compute_type = _get_compute_type
_core = types.ModuleType("cupy._core")
_core._routines_linalg = _routines_linalg


def install(monkeypatch: Any) -> types.ModuleType:
    """Make ``import cupy`` give this module and ``array_api_compat.cupy`` the NumPy namespace."""
    import array_api_compat.numpy as xp_numpy

    module = sys.modules[__name__]
    runtime.device_count, runtime.current, runtime.fail = 1, 0, None
    compute_types.clear()
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setitem(sys.modules, "cupy._core", _core)
    monkeypatch.setitem(sys.modules, "cupy._core._routines_linalg", _routines_linalg)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", xp_numpy)
    return module
