"""Training checkpoints: a model file that also holds the optimizer's state and the run's
(epoch, RNG state, history, run settings), written atomically and checked whole when read, so
resuming from one cannot fail half-way."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .io import (
    _CHECKPOINT_BIT_GENERATORS,
    _EXTRA_PREFIX,
    _OPT_PREFIX,
    _check_array,
    _check_finite_for_save,
    _is_checkpoint_array,
    _is_int,
    _open,
    _preprocessing,
    _weights,
    save,
)

__all__ = ["save_checkpoint", "load_checkpoint"]

# The callbacks' arrays (an EarlyStopping's best weights, ...), named in their JSON states.
_CB = "cb__"
_CB_PREFIX = _EXTRA_PREFIX + _CB


def save_checkpoint(
    path: str | os.PathLike,
    model: Any,
    optimizer: Any,
    state: Mapping[str, Any],
    callback_arrays: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Atomically save weights, optimizer state and the JSON training ``state``.

    The state (epoch, RNG state, history, the callbacks' states, ...) lets training resume
    exactly where it stopped; ``callback_arrays`` are the arrays its ``"callbacks"`` entry
    names (``{"__array__": name}``).

    Raises
    ------
    ValueError
        A weight or an optimizer array is NaN or inf (nothing is written).
    """
    opt = optimizer.state_dict(model.backend)
    _check_finite_for_save(path, {f"optimizer {k}": v for k, v in opt["arrays"].items()})
    extras = {f"opt__{k}": v for k, v in opt["arrays"].items()}
    extras.update({_CB + k: v for k, v in (callback_arrays or {}).items()})
    meta = {
        "checkpoint": dict(state),
        "optimizer": {k: opt[k] for k in ("name", "hyperparameters", "t")},
    }
    save(model, path, extras=extras, metadata=meta)


def _check_state(path: str, state: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the checkpoint's training state is not a mapping")
    missing = [k for k in ("epoch", "rng_state", "base_lr", "history") if k not in state]
    if missing:
        raise ValueError(f"{path}: the checkpoint is missing {', '.join(missing)}")
    if not _is_int(state["epoch"]) or state["epoch"] < 0:
        raise ValueError(f"{path}: epoch {state['epoch']!r} is not a non-negative integer")
    base_lr = state["base_lr"]
    if not isinstance(base_lr, int | float) or isinstance(base_lr, bool) or not base_lr > 0:
        raise ValueError(f"{path}: base_lr {base_lr!r} is not a positive number")
    if not math.isfinite(base_lr):
        raise ValueError(f"{path}: base_lr {base_lr!r} is not finite")
    history = state["history"]
    # Values stay free-form: callbacks may log anything JSON holds.
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError(f"{path}: history must map metric names to lists")
    _restored_rng(path, state["rng_state"])
    from .training.callback_states import decode_state
    from .training.resume import RunSettings

    callbacks = state.get("callbacks", {})
    if not isinstance(callbacks, dict):
        raise ValueError(f"{path}: the checkpoint's callback states are not a mapping")
    n = len(_CB_PREFIX)
    arrays = {k[n:]: v for k, v in arrays.items() if k.startswith(_CB_PREFIX)}
    return {
        **state,
        "run": RunSettings.from_json(path, state.get("run")),
        "callbacks": decode_state(callbacks, arrays, path),
    }


def _restored_rng(path: str, rng_state: Any) -> np.random.Generator:
    """A generator of the checkpoint's kind in the saved state, which resuming adopts."""
    name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
    if name not in _CHECKPOINT_BIT_GENERATORS:
        raise ValueError(
            f"{path}: rng_state is not the state of a PCG64 or PCG64DXSM generator "
            f"(bit_generator: {name!r}); no other can be saved in a checkpoint"
        )
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = rng_state  # raises on a malformed state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"{path}: rng_state is invalid: {exc}") from None
    return np.random.Generator(bit_generator)


def _check_optimizer(
    path: str, opt: Any, arrays: dict[str, np.ndarray], weights: list[np.ndarray], dtype: str
) -> dict[str, Any]:
    from .optim import OPTIMIZERS

    if not isinstance(opt, dict) or opt.get("name") not in OPTIMIZERS:
        raise ValueError(f"{path}: the checkpoint names no known optimizer")
    hyper = opt.get("hyperparameters")
    if not isinstance(hyper, dict):
        raise ValueError(f"{path}: optimizer hyperparameters must be a mapping")
    cls = OPTIMIZERS[opt["name"]]
    try:
        cls(**hyper)  # the constructor refuses NaN or out-of-range values
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: invalid optimizer hyperparameters: {exc}") from None
    for key, value in hyper.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}: optimizer {key} is {value}")
    t = opt.get("t")
    if not _is_int(t) or t < 0:
        raise ValueError(f"{path}: optimizer step count t={t!r} is not a non-negative integer")
    state_arrays = {
        k[len(_OPT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_OPT_PREFIX)
    }
    expected = {f"{n}{i}": w.shape for n in cls.state_names for i, w in enumerate(weights)}
    for key in state_arrays:
        if key not in expected:
            raise ValueError(f"{path}: unexpected optimizer array {key!r} for {opt['name']}")
    for name in cls.state_names:
        present = [f"{name}{i}" in state_arrays for i in range(len(weights))]
        if any(present) and not all(present):
            raise ValueError(f"{path}: optimizer state {name!r} is incomplete")
    for key, arr in state_arrays.items():
        _check_array(path, f"optimizer {key}", arr, expected[key], dtype)
        if key.rstrip("0123456789") in cls.nonnegative_state and np.any(arr < 0):
            raise ValueError(
                f"{path}: optimizer {key} (a second moment or a sum of squares) is negative"
            )
    return {"name": opt["name"], "hyperparameters": hyper, "t": t, "arrays": state_arrays}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint, on the host.

    Returns ``{"model_meta", "weights", "preprocessing", "optimizer", "state", "rng"}``
    (``preprocessing`` is the model's, or ``None``; ``rng`` a NumPy Generator in the saved
    state; the state's ``"run"`` the run's ``RunSettings`` (``mlp_accel.training.resume``),
    ``None`` where the checkpoint records none; its ``"callbacks"`` the callbacks' states by
    key, arrays in place, ``{}`` where it records none).

    Everything is validated here (weights, optimizer state and arrays, epoch, RNG state,
    history), so resuming from a checkpoint this returns cannot fail half-way.

    Raises
    ------
    ValueError
        If the file is not a checkpoint (a plain model file, say), is unreadable or malformed;
        the message names the file and the problem.
    """
    meta, arrays = _open(path, _is_checkpoint_array)
    path = os.fspath(path)
    user = meta.get("user", {})
    if "checkpoint" not in user:
        raise ValueError(f"{path} is a model file, not a training checkpoint")
    weights = _weights(path, meta, arrays)
    try:
        preprocessing = _preprocessing(arrays)
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{path} has an invalid preprocessing: {exc}") from None
    state = _check_state(path, user["checkpoint"], arrays)
    return {
        "model_meta": meta,
        "weights": weights,
        "preprocessing": preprocessing,
        "optimizer": _check_optimizer(path, user.get("optimizer"), arrays, weights, meta["dtype"]),
        "state": state,
        "rng": _restored_rng(path, state["rng_state"]),
    }
