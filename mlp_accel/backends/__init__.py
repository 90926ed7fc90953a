"""Backend registry: names map to ``"module:Class"`` strings, imported on request.

Importing this package imports no backend; ``get_backend("numba")`` is the first moment
numba is imported. ``"auto"`` takes the first of :data:`AUTO_ORDER` that starts here.
"""

from __future__ import annotations

import importlib
import os
import threading

from .base import Backend, BackendUnavailableError, NetworkSpec

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "NetworkSpec",
    "BACKENDS",
    "AUTO_ORDER",
    "available_backends",
    "get_backend",
    "backend_status",
]

#: Every backend this package knows, by name.
BACKENDS: dict[str, str] = {
    "numpy": "mlp_accel.backends.numpy_backend:NumpyBackend",
    "numba": "mlp_accel.backends.numba_backend:NumbaBackend",
    "cupy": "mlp_accel.backends.cupy_backend:CupyBackend",
}

#: Preference order of ``"auto"``: a GPU first, then jitted CPU kernels, then NumPy.
AUTO_ORDER: tuple[str, ...] = tuple(n for n in ("cupy", "numba", "numpy") if n in BACKENDS)

_instances: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_lock = threading.Lock()


def _valid_names() -> str:
    return ", ".join(["auto", *BACKENDS])


def _start(name: str) -> Backend:
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
        backend = getattr(module, class_name)()
    except BackendUnavailableError:
        raise
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {exc.name or exc} is not installed ({exc})"
        ) from exc
    except Exception as exc:  # a driver or runtime failing to start
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {type(exc).__name__}: {exc}"
        ) from exc
    return backend


def get_backend(name: str | Backend | None = "auto") -> Backend:
    """Return the backend called ``name``, starting it on first use.

    Parameters
    ----------
    name : str or Backend or None
        ``"auto"`` (or ``None``), a registered name, or a :class:`Backend` instance
        (returned as is). ``"auto"`` honours the ``MLP_ACCEL_BACKEND`` environment variable.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    RuntimeError
        (:class:`BackendUnavailableError`) a known backend that cannot start here, and why.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = "auto"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    name = name.strip().lower()
    if name == "auto":
        env = os.environ.get("MLP_ACCEL_BACKEND", "").strip().lower()
        if env and env != "auto":
            return get_backend(env)
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return get_backend(candidate)
            except BackendUnavailableError as exc:
                reasons.append(str(exc))
        raise BackendUnavailableError("no backend could start: " + "; ".join(reasons))
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {_valid_names()}")
    with _lock:
        if name in _instances:
            return _instances[name]
        if name in _failures:
            raise BackendUnavailableError(_failures[name])
        try:
            backend = _start(name)
        except BackendUnavailableError as exc:
            _failures[name] = str(exc)
            raise
        _instances[name] = backend
        return backend


def backend_status() -> dict[str, tuple[bool, str | dict[str, str]]]:
    """For each registered backend: ``(works, description or reason)``."""
    status: dict[str, tuple[bool, str | dict[str, str]]] = {}
    for name in BACKENDS:
        try:
            backend = get_backend(name)
        except BackendUnavailableError as exc:
            status[name] = (False, str(exc))
        else:
            status[name] = (True, backend.describe())
    return status


def available_backends() -> list[str]:
    """Names of the backends that start on this machine, in ``"auto"`` preference order."""
    order = [*AUTO_ORDER, *(n for n in BACKENDS if n not in AUTO_ORDER)]
    return [n for n in order if _works(n)]


def _works(name: str) -> bool:
    """Whether the backend ``name`` starts here."""
    try:
        get_backend(name)
    except BackendUnavailableError:
        return False
    return True
