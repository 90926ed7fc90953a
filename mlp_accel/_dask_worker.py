"""What runs on a Dask worker for :mod:`mlp_accel.distributed`: the worker's own model (built
once per process from the model's description, its user-defined activations' formulas
included), a row chunk prepared there, and the gradients or local steps of one chunk."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .training.step import accumulated_loss_and_gradients

_MODELS: dict[tuple, Any] = {}


def _meta(model: Any) -> tuple:
    # The formulas of user-defined activations travel with the model: a worker process
    # knows only the built-in names.
    table = tuple(
        sorted((n, f["expr"], f["derivative"]) for n, f in model.activation_table.items())
    )
    return (
        tuple(model.layers),
        tuple(model.activations),
        model.loss,
        model.dtype,
        model.backend.name,
        table,
    )


def _worker_model(meta: tuple) -> Any:
    model = _MODELS.get(meta)
    if model is None:
        from .model import MLP

        layers, activations, loss, dtype, backend, table = meta
        custom = {n: {"expr": e, "derivative": d} for n, e, d in table}
        model = MLP(
            list(layers),
            list(activations),
            loss,
            backend=backend,
            dtype=dtype,
            seed=0,
            custom_activations=custom,
        )
        _MODELS[meta] = model
    return model


def _prepare_part(
    meta: tuple, X: Any, y: Any, preprocessing: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert one row chunk on its worker, to host arrays of the model's dtype.

    Through the model's preprocessing (raw features and labels in), if it has one.
    """
    model = _worker_model(meta)
    X, y = np.asarray(X), np.asarray(y)
    if preprocessing is not None:
        X, y = preprocessing.inputs(X, model.layers[0], model.dtype), preprocessing.targets(y)
    return model.prepare_host(X, y)


def _select(part: tuple[np.ndarray, np.ndarray], rows: Any) -> tuple[np.ndarray, np.ndarray]:
    X, y = part
    if isinstance(rows, tuple):
        return X[rows[0] : rows[1]], y[rows[0] : rows[1]]
    return X[rows], y[rows]


def _chunk_gradients(
    meta: tuple, weights: list[np.ndarray], part: Any, rows: Any, accumulate: int
) -> tuple[float, list[np.ndarray], int, float]:
    """Return the summed loss and gradients of ``rows`` of one chunk, their count and seconds."""
    t0 = time.perf_counter()
    model = _worker_model(meta)
    backend = model.backend
    model.set_params([backend.asarray(w, model.dtype) for w in weights])
    Xh, yh = _select(part, rows)
    X, y = backend.asarray(Xh, model.dtype), backend.asarray(yh, model.dtype)
    n = X.shape[0]
    loss_sum, grads = accumulated_loss_and_gradients(model, X, y, accumulate, denom=1.0)
    out = [np.array(backend.to_numpy(g), copy=True) for g in grads]
    return float(backend.to_numpy(loss_sum)), out, n, time.perf_counter() - t0


def _chunk_local_steps(
    meta: tuple,
    weights: list[np.ndarray],
    opt_state: dict[str, Any],
    part: Any,
    batches: list[Any],
    options: dict[str, Any],
) -> tuple[float, list[np.ndarray], dict[str, Any], int, float]:
    """Local SGD: ``len(batches)`` optimizer steps on this chunk's rows of each batch."""
    from .optim import get_optimizer

    t0 = time.perf_counter()
    model = _worker_model(meta)
    backend = model.backend
    model.set_params([backend.asarray(w, model.dtype) for w in weights])
    optimizer = get_optimizer(opt_state["name"], **opt_state["hyperparameters"])
    optimizer.load_state_dict(opt_state, backend)
    loss, n = 0.0, 0
    for rows in batches:
        Xh, yh = _select(part, rows)
        if Xh.shape[0] == 0:
            continue
        X, y = backend.asarray(Xh, model.dtype), backend.asarray(yh, model.dtype)
        loss += float(backend.to_numpy(model.train_step(X, y, optimizer, **options)))
        n += X.shape[0]
    weights_out = [np.array(backend.to_numpy(p), copy=True) for p in model.params]
    return loss, weights_out, optimizer.state_dict(backend), n, time.perf_counter() - t0


def _unpack_local(meta, payload, part, batches, options):
    weights, state = payload
    return _chunk_local_steps(meta, weights, state, part, batches, options)
