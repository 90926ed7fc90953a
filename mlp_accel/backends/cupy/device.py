"""Starting the CuPy backend: importing CuPy, probing the GPU, the ``device`` and ``tf32``
options, CuPy's process-wide TF32 switch, and the facts ``describe`` reports.

Nothing here imports CuPy at module import; :func:`import_cupy` does, when a backend starts.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..base import BackendUnavailableError

__all__ = [
    "INSTALL_HINT",
    "import_cupy",
    "probe_device",
    "device_option",
    "tf32_option",
    "set_tf32",
    "tf32_applied",
    "tf32_active",
    "describe_gpu",
]

#: How to install CuPy, for the error raised where it is missing.
INSTALL_HINT = "pip install 'mlp-accel[cuda13]' or 'mlp-accel[cuda12]'"
_PREFIX = "backend 'cupy' is unavailable: "


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def import_cupy() -> Any:
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


def probe_device(cupy: Any, device_id: int) -> None:
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


def device_option(device: Any) -> int:
    """The GPU index of the ``device`` option (``None``: ``$MLP_ACCEL_DEVICE``, else 0).

    Raises
    ------
    TypeError
        ``device`` is not an integer.
    ValueError
        ``device`` is negative.
    BackendUnavailableError
        ``$MLP_ACCEL_DEVICE`` is not an integer (the environment is not the caller's value).
    """
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
    return device


def tf32_option(tf32: Any) -> bool:
    """The ``tf32`` option as a bool (``None``: ``$MLP_ACCEL_TF32``, else off).

    Raises
    ------
    TypeError
        ``tf32`` is neither ``None`` nor a bool.
    """
    if tf32 is None:
        return _env_flag("MLP_ACCEL_TF32")
    if not isinstance(tf32, bool | np.bool_):
        raise TypeError(f"tf32 must be True or False, got {tf32!r}")
    return bool(tf32)


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


def set_tf32(enabled: bool) -> bool:
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


def tf32_applied() -> bool | None:
    """The TF32 setting :func:`set_tf32` last applied (``None``: never applied)."""
    return _tf32_applied


def tf32_active() -> bool | None:
    """Whether CuPy's float32 GEMMs use TF32 now (``None`` if CuPy does not say)."""
    linalg = _linalg_module()
    if linalg is None or not hasattr(linalg, "get_compute_type"):
        return None
    return int(linalg.get_compute_type(np.float32)) == int(getattr(linalg, "COMPUTE_TYPE_TF32", 7))


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def describe_gpu(cupy: Any, device_id: int, props: dict, tf32: bool) -> dict[str, str]:
    """GPU name, memory, compute capability, CUDA and CuPy versions, and the TF32 state
    (what CuPy reports, else the backend's ``tf32`` setting)."""
    rt = cupy.cuda.runtime
    name = props.get("name", b"unknown")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    free, total = cupy.cuda.Device(device_id).mem_info
    active = tf32_active()
    active = tf32 if active is None else active
    return {
        "device": f"cuda:{device_id}",
        "gpu": str(name),
        "memory": f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)",
        "compute capability": f"{props.get('major', '?')}.{props.get('minor', '?')}",
        "cuda runtime": _cuda_version(int(rt.runtimeGetVersion())),
        "cuda driver": _cuda_version(int(rt.driverGetVersion())),
        "cupy": str(cupy.__version__),
        "tf32": "on" if active else "off",
    }
