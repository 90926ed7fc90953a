"""Saving and loading models: ``.npz`` files of plain arrays plus JSON metadata, no pickle.

Saves go through :func:`atomic_write` (see :mod:`mlp_accel._atomic`): a crash mid-save leaves
the earlier file intact, symlinks are written through, permissions follow the umask (or the
replaced file). Non-finite weights are never saved.

Loading never unpickles and trusts nothing in the file: the format is recognized from its
first bytes; every member's ``.npy`` header is read and its declared size compared with the
member's real size before any array is allocated; the metadata and (for checkpoints) the
training state are checked field by field. Every malformed file raises one ``ValueError``
that names the file and the problem.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._atomic import atomic_write
from .ops.layout import param_layout, param_name
from .ops.table import custom_activations, register_activation

__all__ = [
    "save",
    "load",
    "load_extras",
    "load_metadata",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "mlp_accel.model"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_EXTRA_PREFIX = "extra__"
_OPT_PREFIX = _EXTRA_PREFIX + "opt__"
# Deflate cannot expand more than about 1032:1, so a compressed member declaring more than
# this over its compressed size lies about its size.
_MAX_DEFLATE_RATIO = 1032


def _encode_json(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _check_finite_for_save(path: Any, arrays: Mapping[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"refusing to save {os.fspath(path)}: {name} contains NaN or inf "
                "(did training diverge?)"
            )


def save(
    model: Any,
    path: str | os.PathLike,
    extras: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Save ``model`` to ``path`` atomically.

    Parameters
    ----------
    model : MLP
    path : path-like
        Destination, written exactly as given (no suffix is added). A symlink is written
        through to its target; a FIFO or character device is written directly; a directory
        or other special file is refused.
    extras : mapping of str to array-like, optional
        Extra numeric arrays stored beside the weights (the CLI keeps its input scaling and
        class labels here); read back with :func:`load_extras`.
    metadata : mapping, optional
        JSON-serializable data stored with the model; read back with :func:`load_metadata`.

    Raises
    ------
    ValueError
        A weight is NaN or inf (nothing is written), or ``path`` is a special file.
    OSError
        The write failed; the message names ``path`` and an earlier file there is intact.
    """
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "layers": list(model.layers),
        "activations": list(model.activations),
        "loss": model.loss,
        "dtype": model.dtype,
        "init": model.init,
        "backend": model.backend.name,
        "user": dict(metadata or {}),
    }
    # A user-registered activation travels as its expression, so a fresh process loads it.
    custom = custom_activations(model.activations)
    if custom:
        meta["custom_activations"] = custom
    weights = {param_name(i): w for i, w in enumerate(model.get_weights())}
    _check_finite_for_save(path, weights)
    arrays: dict[str, np.ndarray] = {_META_KEY: _encode_json(meta), **weights}
    for key, value in (extras or {}).items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"extra {key!r} is an object array; only plain arrays are saved")
        arrays[_EXTRA_PREFIX + key] = arr
    atomic_write(path, lambda f: np.savez(f, **arrays))


# -- reading -----------------------------------------------------------------------------------
def _sniff(path: str) -> None:
    """Refuse a file that is not a zip archive, saying what it looks like instead."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return
    if head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array (.npy)"
    elif head.startswith(b"\x80"):
        raise ValueError(f"{path} holds pickled data, which is never loaded")
    elif not head:
        what = "empty"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        what = "a text file (CSV or similar)"
    else:
        what = "of an unknown format (not an .npz archive)"
    raise ValueError(f"{path} is not an mlp_accel model file: it is {what}")


def _read_member(
    path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int
) -> np.ndarray:
    """One ``.npy`` member, its declared size checked against its real size first."""
    name = info.filename[: -len(".npy")]
    end = info.header_offset + info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.compress_size == info.file_size
    else:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
    if end > file_size or not plausible:
        raise ValueError(f"{path} is corrupt: member {name!r} declares more data than it holds")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{path}: member {name!r} has unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError(
                f"{path} holds pickled data (an object array in {name!r}), which is never loaded"
            )
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(
                f"{path} is corrupt: member {name!r} declares shape {shape} of {dtype} "
                f"({nbytes} bytes) but holds {info.file_size - f.tell()} bytes"
            )
        arr = np.empty(count, dtype=dtype)
        view = memoryview(arr.view(np.uint8)) if nbytes else memoryview(b"")
        filled = 0
        while filled < nbytes:
            n = f.readinto(view[filled:])
            if not n:
                raise ValueError(f"{path} is truncated in member {name!r}")
            filled += n
    return arr.reshape(shape, order="F" if fortran else "C")


def _open(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    _sniff(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        file_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    arrays[info.filename[: -len(".npy")]] = _read_member(path, zf, info, file_size)
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path} is not a readable mlp_accel model file: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression.
        raise ValueError(
            f"{path} is not a readable mlp_accel model file (truncated or foreign): {exc}"
        ) from None
    if _META_KEY not in arrays:
        raise ValueError(f"{path} is not an mlp_accel model file: no metadata")
    raw = arrays.pop(_META_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} has corrupt metadata: not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has corrupt metadata: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path} has corrupt metadata: JSON nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mlp_accel model file: wrong format tag")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('version')!r}; "
            f"this mlp_accel reads version {FORMAT_VERSION}"
        )
    _check_meta(path, meta)
    _register_custom(meta.get("custom_activations", {}), path)
    return meta, arrays


def _register_custom(custom: Any, path: str) -> None:
    """Register the file's user-defined activations, re-checking every expression."""
    if not isinstance(custom, dict):
        raise ValueError(f"{path} has malformed metadata: custom_activations is not a mapping")
    for name, spec in custom.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("expr"), str):
            raise ValueError(f"{path} has malformed metadata for activation {name!r}")
        try:
            register_activation(name, spec["expr"], spec.get("derivative"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(path: str, meta: dict[str, Any]) -> None:
    """The model description's types; sizes are checked against the arrays later."""
    layers = meta.get("layers")
    if not isinstance(layers, list) or len(layers) < 2:
        raise ValueError(f"{path} has invalid metadata: layers must be a list of 2+ widths")
    if not all(_is_int(w) and w >= 1 for w in layers):
        raise ValueError(
            f"{path} has invalid metadata: layers {layers!r} are not positive integers"
        )
    activations = meta.get("activations")
    if not isinstance(activations, list) or not all(isinstance(a, str) for a in activations):
        raise ValueError(f"{path} has invalid metadata: activations must be a list of names")
    for key in ("loss", "dtype"):
        if not isinstance(meta.get(key), str):
            raise ValueError(f"{path} has invalid metadata: {key} must be a name")
    if not isinstance(meta.get("init", "he"), str):
        raise ValueError(f"{path} has invalid metadata: init must be a name")
    if not isinstance(meta.get("user", {}), dict):
        raise ValueError(f"{path} has invalid metadata: user metadata must be a mapping")


def _check_array(path: str, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if arr.dtype.kind != "f":
        raise ValueError(f"{path}: {name} has dtype {arr.dtype}; expected real floating point")
    if arr.shape != shape:
        raise ValueError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: {name} contains NaN or inf")
    return arr


def _weights(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``[W1, b1, ...]`` checked against the metadata's layer widths."""
    weights = []
    for slot in param_layout(meta["layers"]):
        if slot.name not in arrays:
            raise ValueError(f"{path} is missing {slot.name}")
        weights.append(_check_array(path, slot.name, arrays[slot.name], slot.shape))
    return weights


def _choose_backend(meta: dict[str, Any], backend: Any) -> Any:
    if backend is not None:
        return backend
    from .backends import BACKENDS, BackendUnavailableError, get_backend

    saved = meta.get("backend")
    if isinstance(saved, str) and saved in BACKENDS:
        try:
            return get_backend(saved)
        except BackendUnavailableError:
            pass
    return "auto"


def load(path: str | os.PathLike, backend: Any = None) -> Any:
    """Load a model saved by :func:`save` (or :meth:`MLP.save`).

    Parameters
    ----------
    path : path-like
    backend : str or Backend, optional
        Where the model lives, like ``map_location`` in ``torch.load``. By default the backend
        it was saved from, if that one starts here; else (or for files saved before the
        backend was recorded) ``"auto"``. Pass ``"numpy"``, ``"numba"``, ``"cupy"``,
        ``"auto"`` or a backend instance to choose.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A truncated, foreign, pickled or malformed file (weights that do not fit the metadata,
        non-finite or complex weights, ...); the message names the file and the problem.
    """
    from .model import MLP

    meta, arrays = _open(path)
    path = os.fspath(path)
    weights = _weights(path, meta, arrays)  # before MLP allocates anything from the metadata
    from .backends import get_backend

    # The caller's backend errors (unknown name, unavailable) are theirs, not the file's.
    chosen = get_backend(_choose_backend(meta, backend))
    try:
        model = MLP(
            meta["layers"],
            meta["activations"],
            meta["loss"],
            backend=chosen,
            dtype=meta["dtype"],
            init=meta.get("init", "he"),
            seed=0,
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} has invalid metadata: {exc}") from None
    model.set_weights(weights)
    return model


def load_extras(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The extra arrays saved beside a model's weights."""
    _, arrays = _open(path)
    return {k[len(_EXTRA_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_EXTRA_PREFIX)}


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata saved with a model (``metadata=`` of :func:`save`)."""
    meta, _ = _open(path)
    return dict(meta.get("user", {}))


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(
    path: str | os.PathLike, model: Any, optimizer: Any, state: Mapping[str, Any]
) -> None:
    """Atomically save weights, optimizer state and the JSON training ``state`` (epoch, RNG
    state, history, ...) so that training can resume exactly where it stopped.

    Raises
    ------
    ValueError
        A weight or an optimizer array is NaN or inf (nothing is written).
    """
    opt = optimizer.state_dict(model.backend)
    _check_finite_for_save(path, {f"optimizer {k}": v for k, v in opt["arrays"].items()})
    extras = {f"opt__{k}": v for k, v in opt["arrays"].items()}
    meta = {
        "checkpoint": dict(state),
        "optimizer": {k: opt[k] for k in ("name", "hyperparameters", "t")},
    }
    save(model, path, extras=extras, metadata=meta)


def _check_state(path: str, state: Any) -> dict[str, Any]:
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
    rng_state = state["rng_state"]
    name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
    if name not in ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"):
        raise ValueError(f"{path}: rng_state is not the state of a NumPy bit generator")
    try:
        getattr(np.random, name)().state = rng_state  # raises on a malformed state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"{path}: rng_state is invalid: {exc}") from None
    from .training.resume import RunSettings

    return {**state, "run": RunSettings.from_json(path, state.get("run"))}


def _check_optimizer(
    path: str, opt: Any, arrays: dict[str, np.ndarray], weights: list[np.ndarray]
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
        _check_array(path, f"optimizer {key}", arr, expected[key])
        if key.startswith("v") and opt["name"] == "adam" and np.any(arr < 0):
            raise ValueError(f"{path}: optimizer {key} (a second moment) is negative")
    return {"name": opt["name"], "hyperparameters": hyper, "t": t, "arrays": state_arrays}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint: ``{"model_meta", "weights", "optimizer", "state"}`` on the host; the
    state's ``"run"`` is the run's :class:`~mlp_accel.training.resume.RunSettings` (``None``
    where the checkpoint records none).

    Everything is validated here (weights, optimizer state and arrays, epoch, RNG state,
    history), so resuming from a checkpoint this returns cannot fail half-way.

    Raises
    ------
    ValueError
        If the file is not a checkpoint (a plain model file, say), is unreadable or malformed;
        the message names the file and the problem.
    """
    meta, arrays = _open(path)
    path = os.fspath(path)
    user = meta.get("user", {})
    if "checkpoint" not in user:
        raise ValueError(f"{path} is a model file, not a training checkpoint")
    weights = _weights(path, meta, arrays)
    return {
        "model_meta": meta,
        "weights": weights,
        "optimizer": _check_optimizer(path, user.get("optimizer"), arrays, weights),
        "state": _check_state(path, user["checkpoint"]),
    }
