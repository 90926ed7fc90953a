"""Saving and loading models: ``.npz`` files of plain arrays plus JSON metadata, no pickle.

Saves are atomic: the file is written beside its destination under a temporary name, flushed
to disk, then moved over the destination with ``os.replace``, so a crash mid-save leaves the
earlier file intact. Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

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


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it over ``path``.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _encode_json(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


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
        Destination, written exactly as given (no suffix is added).
    extras : mapping of str to array-like, optional
        Extra numeric arrays stored beside the weights (the CLI keeps its input scaling and
        class labels here); read back with :func:`load_extras`.
    """
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "layers": list(model.layers),
        "activations": list(model.activations),
        "loss": model.loss,
        "dtype": model.dtype,
        "init": model.init,
        "user": dict(metadata or {}),
    }
    # A user-registered activation travels as its expression, so a fresh process loads it.
    custom = custom_activations(model.activations)
    if custom:
        meta["custom_activations"] = custom
    arrays: dict[str, np.ndarray] = {_META_KEY: _encode_json(meta)}
    for i, w in enumerate(model.get_weights()):
        arrays[f"{'Wb'[i % 2]}{i // 2 + 1}"] = w
    for key, value in (extras or {}).items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"extra {key!r} is an object array; only plain arrays are saved")
        arrays[_EXTRA_PREFIX + key] = arr
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _open(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{path} holds pickled data, which is never loaded") from None
        raise ValueError(f"{path} is not an mlp_accel model file: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a readable mlp_accel model file (truncated or foreign): {exc}"
        ) from None
    if _META_KEY not in arrays:
        raise ValueError(f"{path} is not an mlp_accel model file: no metadata")
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has corrupt metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mlp_accel model file: wrong format tag")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('version')}; "
            f"this mlp_accel reads version {FORMAT_VERSION}"
        )
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


def load(path: str | os.PathLike, backend: Any = "auto") -> Any:
    """Load a model saved by :func:`save` (or :meth:`MLP.save`) onto ``backend``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A truncated, foreign or pickled file, or weights that do not fit the metadata.
    """
    from .model import MLP

    meta, arrays = _open(path)
    try:
        model = MLP(
            meta["layers"],
            meta["activations"],
            meta["loss"],
            backend=backend,
            dtype=meta["dtype"],
            init=meta.get("init", "he"),
            seed=0,
        )
        n = len(model.weight_shapes)
        weights = [arrays[f"{'Wb'[i % 2]}{i // 2 + 1}"] for i in range(n)]
    except KeyError as exc:
        raise ValueError(f"{os.fspath(path)} is missing {exc} ") from None
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


def save_checkpoint(
    path: str | os.PathLike, model: Any, optimizer: Any, state: Mapping[str, Any]
) -> None:
    """Atomically save weights, optimizer state and the JSON training ``state`` (epoch, RNG
    state, history, ...) so that training can resume exactly where it stopped."""
    opt = optimizer.state_dict(model.backend)
    extras = {f"opt__{k}": v for k, v in opt["arrays"].items()}
    meta = {
        "checkpoint": dict(state),
        "optimizer": {k: opt[k] for k in ("name", "hyperparameters", "t")},
    }
    save(model, path, extras=extras, metadata=meta)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint: ``{"model_meta", "weights", "optimizer", "state"}`` on the host.

    Raises
    ------
    ValueError
        If the file is not a checkpoint (a plain model file, say) or is unreadable.
    """
    meta, arrays = _open(path)
    user = meta.get("user", {})
    if "checkpoint" not in user:
        raise ValueError(f"{os.fspath(path)} is a model file, not a training checkpoint")
    n = 2 * (len(meta["layers"]) - 1)
    weights = [arrays[f"{'Wb'[i % 2]}{i // 2 + 1}"] for i in range(n)]
    prefix = _EXTRA_PREFIX + "opt__"
    optimizer = dict(user["optimizer"])
    optimizer["arrays"] = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    return {
        "model_meta": meta,
        "weights": weights,
        "optimizer": optimizer,
        "state": user["checkpoint"],
    }
