"""A model's ``backend="auto"`` request: recognizing it when the model is built
(:func:`auto_options`), and settling it for the first fit (:func:`settle_auto`), when the job
is known.

The cost model that makes the choice is :mod:`mlp_accel.backends._auto`; this module asks it
among the backends that may start here and starts the one chosen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .backends import (
    BACKENDS,
    Backend,
    BackendUnavailableError,
    NetworkSpec,
    get_backend,
    has_failed,
    options_for,
)
from .backends import _check_options as check_backend_options
from .backends._auto import BackendChoice, Job, choose_backend

__all__ = ["auto_options", "settle_auto"]


def auto_options(backend: Any) -> dict[str, Any] | None:
    """The backend options of a request for the per-job choice (``"auto"``, alone or as
    ``("auto", options)``, and no override in ``MLP_ACCEL_BACKEND``); ``None`` for any other
    request."""
    options: dict[str, Any] = {}
    if isinstance(backend, tuple) and len(backend) == 2 and isinstance(backend[1], Mapping):
        backend, options = backend[0], dict(backend[1])
    if backend is not None and not (isinstance(backend, str) and backend.strip().lower() == "auto"):
        return None
    env = os.environ.get("MLP_ACCEL_BACKEND", "").strip().lower()
    if env and env != "auto":
        return None
    check_backend_options("auto", options)
    return options


def _may_start(name: str, options: Mapping[str, Any]) -> bool:
    """Whether backend ``name`` may start here, asked without starting it: its library is
    installed and it has not failed to start before with these options."""
    import importlib.util

    if has_failed(name, **options_for(name, options)):
        return False
    library = {"numba": "numba", "cupy": "cupy"}.get(name)
    return library is None or importlib.util.find_spec(library) is not None


def settle_auto(
    spec: NetworkSpec,
    rows: int | None,
    epochs: int,
    batch_size: int | None,
    options: Mapping[str, Any],
) -> tuple[BackendChoice, Backend]:
    """The backend the cost model picks for a fit of ``rows`` x ``epochs`` of the network
    ``spec``, started with its share of ``options``, and the choice with its reason.

    A backend that is registered but cannot start here is dropped and the choice made again
    among the others.
    """
    job = Job(
        tuple(spec.widths), spec.dtype, rows, epochs, batch_size, tuple(spec.activations), spec.loss
    )
    candidates = [n for n in BACKENDS if n in ("numpy", "numba", "cupy") and _may_start(n, options)]
    while True:
        choice = choose_backend(job, candidates)
        try:
            target = get_backend(choice.name, **options_for(choice.name, options))
        except BackendUnavailableError:
            # Registered but cannot start here: choose among the others.
            candidates.remove(choice.name)
            continue
        break
    return choice, target
