"""Saving and loading models: ``.npz`` files of plain arrays plus JSON metadata, no pickle.

Saves go through :func:`atomic_write` (see :mod:`mlp_accel._atomic`): a crash mid-save leaves
the earlier file intact, symlinks are written through, permissions follow the umask (or the
replaced file). Non-finite weights are never saved.

Loading never unpickles and trusts nothing in the file: the format is recognized from its
first bytes; only the members the caller needs are read (the weights for :func:`load`), and
each one's declared size is compared with its real size and with the shape the metadata
gives it before any array is allocated (see :mod:`mlp_accel._archive`); the metadata and
(for checkpoints) the training state are checked field by field. Every malformed file
raises one ``ValueError`` that names the file and the problem.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._archive import read_member, sniff
from ._atomic import atomic_write
from .ops.layout import param_layout, param_name

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
# Metadata is JSON of a few KB (a long run's history: some MB); more is not a model file.
_MAX_META_BYTES = 64 * 2**20
# The bit generators whose state is plain integers; the others' states hold arrays, which
# the JSON metadata cannot carry, so a checkpoint naming one of them was not saved by us.
_CHECKPOINT_BIT_GENERATORS = ("PCG64", "PCG64DXSM")


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
        Extra arrays stored beside the weights; read back with :func:`load_extras`. The
        model's ``preprocessing`` is stored among them under the names of
        ``mlp_accel.preprocessing.KEYS`` (``x_mean``, ``x_scale``, ``classes``, ...), which
        :func:`load` reads back as the loaded model's preprocessing: those names are reserved.
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
    # A user-defined activation travels as its expression, so a fresh process loads it.
    if model.activation_table:
        meta["custom_activations"] = model.activation_table
    weights = {param_name(i): w for i, w in enumerate(model.get_weights())}
    _check_finite_for_save(path, weights)
    arrays: dict[str, np.ndarray] = {_META_KEY: _encode_json(meta), **weights}
    extras = dict(extras or {})
    if model.preprocessing is not None:
        kept = model.preprocessing.arrays()
        clash = sorted(set(kept) & set(extras))
        if clash:
            raise ValueError(f"extras {clash} are the model's preprocessing, saved from it")
        extras.update(kept)
    for key, value in extras.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"extra {key!r} is an object array; only plain arrays are saved")
        arrays[_EXTRA_PREFIX + key] = arr
    atomic_write(path, lambda f: np.savez(f, **arrays))


# -- reading -----------------------------------------------------------------------------------
def _parse_meta(path: str, raw: np.ndarray) -> dict[str, Any]:
    """The metadata member decoded and checked; every refusal names ``path``."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} has corrupt metadata: not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{path} has corrupt metadata: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} has corrupt metadata: {exc}") from None
    except ValueError:
        # Python's limit on the digits of an integer, which JSON does not have.
        raise ValueError(
            f"{path} has corrupt metadata: an integer of more than "
            f"{sys.get_int_max_str_digits()} digits"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mlp_accel model file: wrong format tag")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('version')!r}; "
            f"this mlp_accel reads version {FORMAT_VERSION}"
        )
    _check_meta(path, meta)
    return meta


def _expected_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes the metadata fixes: the weights and a checkpoint's optimizer arrays."""
    from .optim import OPTIMIZERS

    shapes = {slot.name: slot.shape for slot in param_layout(meta["layers"])}
    user = meta.get("user", {})
    opt = user.get("optimizer") if "checkpoint" in user else None
    name = opt.get("name") if isinstance(opt, dict) else None
    # Arrays of another optimizer are left to _check_optimizer, which names them unexpected.
    states = OPTIMIZERS[name].state_names if isinstance(name, str) and name in OPTIMIZERS else ()
    for i, shape in enumerate(list(shapes.values())):
        for state in states:
            shapes[f"{_OPT_PREFIX}{state}{i}"] = shape
    return shapes


def _open(
    path: str | os.PathLike, want: Callable[[str], bool] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked metadata and the members the caller needs, and only those.

    ``want`` picks among the layout's weights and the ``extra__`` members (all of them by
    default); other members are never read, so an unused member costs nothing.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    sniff(path)
    try:
        file_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            members = {
                i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")
            }
            info = members.pop(_META_KEY, None)
            if info is None:
                raise ValueError(f"{path} is not an mlp_accel model file: no metadata")
            raw = read_member(path, zf, info, file_size, max_bytes=_MAX_META_BYTES)
            meta = _parse_meta(path, raw)
            shapes = _expected_shapes(meta)
            arrays = {
                name: read_member(path, zf, info, file_size, shapes.get(name))
                for name, info in members.items()
                if (name in shapes or name.startswith(_EXTRA_PREFIX))
                and (want is None or want(name))
            }
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path} is not a readable mlp_accel model file: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression.
        raise ValueError(
            f"{path} is not a readable mlp_accel model file (truncated or foreign): {exc}"
        ) from None
    meta["custom_activations"] = _custom_table(meta.get("custom_activations", {}), meta, path)
    return meta, arrays


# Which members each reader needs (see _open): the weights, the extras (a CLI model's
# preprocessing among them), or a checkpoint's.
def _is_weight(name: str) -> bool:
    return not name.startswith(_EXTRA_PREFIX)


def _is_model_array(name: str) -> bool:
    """A weight, or a member of the model's preprocessing (not any other extra)."""
    from .preprocessing import KEYS

    return _is_weight(name) or name[len(_EXTRA_PREFIX) :] in KEYS


def _is_extra(name: str) -> bool:
    return name.startswith(_EXTRA_PREFIX)


def _nothing(name: str) -> bool:
    return False


def _is_checkpoint_array(name: str) -> bool:
    # The optimizer's arrays and the callbacks' (``extra__cb__``, see _checkpoint_file).
    return _is_model_array(name) or name.startswith((_OPT_PREFIX, _EXTRA_PREFIX + "cb__"))


def _custom_table(custom: Any, meta: dict[str, Any], path: str) -> dict[str, Any]:
    """Return the file's formulas of the user-defined activations its model uses.

    Others are ignored, unread; they go to the model, never into the process-wide registry.
    """
    if not isinstance(custom, dict):
        raise ValueError(f"{path} has malformed metadata: custom_activations is not a mapping")
    used = {a.strip().lower() for a in meta["activations"]}
    table = {}
    for name, spec in custom.items():
        if name.strip().lower() not in used:
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("expr"), str):
            raise ValueError(f"{path} has malformed metadata for activation {name!r}")
        if not isinstance(spec.get("derivative"), (str, type(None))):
            raise ValueError(f"{path} has malformed metadata for activation {name!r}")
        table[name] = {"expr": spec["expr"], "derivative": spec.get("derivative")}
    return table


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


def _check_array(
    path: str, name: str, arr: np.ndarray, shape: tuple[int, ...], dtype: Any
) -> np.ndarray:
    """A real, finite array of ``shape`` that stays finite in the model's ``dtype``."""
    if arr.dtype.kind != "f":
        raise ValueError(f"{path}: {name} has dtype {arr.dtype}; expected real floating point")
    if arr.shape != shape:
        raise ValueError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: {name} contains NaN or inf")
    if dtype in ("float32", "float64") and arr.size:
        # float64 values beyond float32's range would become inf when the model casts them.
        largest = np.max(np.abs(arr))
        with np.errstate(over="ignore"):
            overflows = not np.isfinite(largest.astype(dtype))
        if overflows:
            raise ValueError(
                f"{path}: {name} holds {largest:g}, beyond the range of the model's {dtype}"
            )
    return arr


def _weights(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``[W1, b1, ...]`` checked against the metadata's layer widths."""
    weights = []
    for slot in param_layout(meta["layers"]):
        if slot.name not in arrays:
            raise ValueError(f"{path} is missing {slot.name}")
        arr = arrays[slot.name]
        weights.append(_check_array(path, slot.name, arr, slot.shape, meta["dtype"]))
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

    A model saved with a ``preprocessing`` (any by ``mlp-accel train``)
    comes back with it: raw features in, the user's labels out, as ``mlp-accel predict``.
    """
    from .model import MLP

    meta, arrays = _open(path, _is_model_array)
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
            custom_activations=meta["custom_activations"],
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} has invalid metadata: {exc}") from None
    model.set_weights(weights)
    try:
        model.preprocessing = _preprocessing(arrays)
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{path} has an invalid preprocessing: {exc}") from None
    return model


def _preprocessing(arrays: dict[str, np.ndarray]) -> Any:
    """The preprocessing among a file's extra arrays, unchecked; ``None`` if it has none."""
    from .preprocessing import Preprocessing

    n = len(_EXTRA_PREFIX)
    return Preprocessing.from_arrays(
        {k[n:]: v for k, v in arrays.items() if k[:n] == _EXTRA_PREFIX}
    )


def load_extras(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The extra arrays saved beside a model's weights."""
    _, arrays = _open(path, _is_extra)
    return {k[len(_EXTRA_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_EXTRA_PREFIX)}


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata saved with a model (``metadata=`` of :func:`save`)."""
    meta, _ = _open(path, _nothing)
    return dict(meta.get("user", {}))


# Checkpoints (a model file with the optimizer's state and the run's) live in their own module,
# which reads through the helpers above.
from ._checkpoint_file import load_checkpoint, save_checkpoint  # noqa: E402
