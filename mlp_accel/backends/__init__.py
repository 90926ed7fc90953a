"""Backend registry: names map to ``"module:Class"`` strings, imported on request.

Importing this package imports no backend; ``get_backend("numba")`` is the first moment
numba is imported. ``"auto"`` takes the first of :data:`AUTO_ORDER` that starts here.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from .._names import canonical_name
from .base import Backend, BackendUnavailableError, NetworkSpec

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "NetworkSpec",
    "BACKENDS",
    "BACKEND_OPTIONS",
    "BackendLike",
    "AUTO_ORDER",
    "available_backends",
    "get_backend",
    "backend_status",
]

#: Every backend this package knows, by name.
BACKENDS: dict[str, str] = {
    "numpy": "mlp_accel.backends.numpy_backend:NumpyBackend",
    "numba": "mlp_accel.backends.numba.backend:NumbaBackend",
    "cupy": "mlp_accel.backends.cupy.backend:CupyBackend",
}

#: Preference order of ``"auto"``: a GPU first, then jitted CPU kernels, then NumPy.
AUTO_ORDER: tuple[str, ...] = tuple(n for n in ("cupy", "numba", "numpy") if n in BACKENDS)

#: The keyword options each backend's constructor takes, for ``get_backend(name, **options)``
#: (declared here so that checking them imports no backend; a test holds them to the
#: constructors). Threads are not among them: BLAS and Numba thread pools are per process,
#: shared by every backend, so they are set process-wide with :func:`mlp_accel.set_threads`.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "numpy": (),
    "numba": ("tier",),
    "cupy": ("device", "tf32"),
}

#: What ``backend=`` arguments take: a name, a started backend, or ``(name, options)``.
BackendLike = str | Backend | tuple[str, Mapping[str, Any]] | None

_OptionsKey = tuple[tuple[str, Any], ...]
_instances: dict[tuple[str, _OptionsKey], Backend] = {}
_failures: dict[tuple[str, _OptionsKey], str] = {}
_lock = threading.Lock()


def _options_key(options: Mapping[str, Any]) -> _OptionsKey:
    """Return the cache key of ``options``: sorted, with ``None`` (the default) left out.

    So ``get_backend("cupy")`` and ``get_backend("cupy", device=None)`` are one backend.
    """
    key = tuple(sorted((k, v) for k, v in options.items() if v is not None))
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"backend options must be hashable values, got {dict(options)!r}") from None
    return key


def _split(name: BackendLike, options: dict[str, Any]) -> tuple[str | Backend, dict[str, Any]]:
    """``(name or Backend, options)`` from any :data:`BackendLike`, options merged."""
    if isinstance(name, tuple):
        if len(name) != 2 or not isinstance(name[1], Mapping):
            raise TypeError(f"a backend tuple must be (name, {{option: value}}), got {name!r}")
        head, extra = name
        both = set(extra) & set(options)
        if both:
            raise TypeError(f"backend option {sorted(both)[0]!r} given twice")
        name, options = head, {**extra, **options}
    if isinstance(name, Backend):
        if options:
            raise TypeError(
                f"options ({', '.join(sorted(options))}) apply to a backend name, not to a "
                f"started {type(name).__name__}"
            )
        return name, options
    if name is None:
        name = "auto"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    return canonical_name(("auto", *BACKENDS), name, "backend"), options


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse an option that backend ``name`` (for ``"auto"``: every backend) does not take."""
    valid = sorted({o for v in BACKEND_OPTIONS.values() for o in v}) if name == "auto" else []
    valid = valid or sorted(BACKEND_OPTIONS.get(name, ()))
    for option in options:
        if option not in valid:
            if option == "threads":
                raise TypeError(
                    "threads are not a backend option: BLAS and Numba thread pools are shared "
                    "by the whole process; use mlp_accel.set_threads(n) or "
                    "`with mlp_accel.threads(n):`"
                )
            raise TypeError(
                f"backend {name!r} takes no option {option!r}; its options: "
                f"{', '.join(valid) or 'none'}"
            )


def _start(name: str, options: Mapping[str, Any]) -> Backend:
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
        backend = getattr(module, class_name)(**options)
    except BackendUnavailableError:
        raise
    except (TypeError, ValueError) as exc:
        if options:  # an option value the backend refuses (a device that is no index): the
            raise  # caller's error, not the backend's
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {type(exc).__name__}: {exc}"
        ) from exc
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {exc.name or exc} is not installed ({exc})"
        ) from exc
    except Exception as exc:  # a driver or runtime failing to start
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {type(exc).__name__}: {exc}"
        ) from exc
    return backend


def has_failed(name: str, **options: Any) -> bool:
    """Whether backend ``name`` with ``options`` already failed to start in this process."""
    return (name, _options_key(options)) in _failures


def get_backend(name: BackendLike = "auto", **options: Any) -> Backend:
    """Return the backend called ``name`` with ``options``, starting it on first use.

    Backends are cached per name and options: ``get_backend("cupy", device=1)`` and
    ``get_backend("cupy", device=0)`` are two backends, each started once; the same call again
    returns the same object.

    Parameters
    ----------
    name : str or Backend or tuple or None
        ``"auto"`` (or ``None``), a registered name, a :class:`Backend` instance (returned as
        is, and then no options), or a ``(name, options)`` pair such as
        ``("cupy", {"device": 1})``. Names are matched case-insensitively. ``"auto"`` honours
        the ``MLP_ACCEL_BACKEND`` environment variable.
    **options
        Keyword options of the backend (:data:`BACKEND_OPTIONS`): for ``"cupy"``,
        ``device`` (GPU index; default ``$MLP_ACCEL_DEVICE``, else 0) and ``tf32`` (TF32
        float32 matrix products; default ``$MLP_ACCEL_TF32``, else off). ``None`` means the
        default. With ``"auto"``, each candidate receives the options it takes. The
        environment variables are read as defaults only; nothing here writes them.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    TypeError
        An option the backend does not take (the message lists those it takes), or options
        beside a :class:`Backend` instance.
    RuntimeError
        (:class:`BackendUnavailableError`) a known backend that cannot start here, and why.
    """
    name, options = _split(name, options)
    if isinstance(name, Backend):
        return name
    _check_options(name, options)
    if name == "auto":
        return _get_auto(options)
    key = (name, _options_key(options))
    with _lock:
        if key in _instances:
            return _instances[key]
        if key in _failures:
            raise BackendUnavailableError(_failures[key])
        try:
            backend = _start(name, dict(key[1]))
        except BackendUnavailableError as exc:
            _failures[key] = str(exc)
            raise
        _instances[key] = backend
        return backend


def options_for(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``options`` that backend ``name`` takes (what ``"auto"`` hands it)."""
    return {k: v for k, v in options.items() if k in BACKEND_OPTIONS.get(name, ())}


def _get_auto(options: Mapping[str, Any]) -> Backend:
    env = os.environ.get("MLP_ACCEL_BACKEND", "").strip().lower()
    if env and env != "auto":
        name = canonical_name(BACKENDS, env, "backend")
        return get_backend(name, **options_for(name, options))
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            return get_backend(candidate, **options_for(candidate, options))
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
    raise BackendUnavailableError("no backend could start: " + "; ".join(reasons))


def backend_status(**options: Any) -> dict[str, tuple[bool, str | dict[str, str]]]:
    """For each registered backend: ``(works, description or reason)``.

    ``options`` are handed to each backend that takes them, as with ``get_backend("auto")``.
    """
    _check_options("auto", options)
    status: dict[str, tuple[bool, str | dict[str, str]]] = {}
    for name in BACKENDS:
        try:
            backend = get_backend(name, **options_for(name, options))
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
