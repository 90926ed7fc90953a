"""Validation and conversion of host data, at the edge, once.

scikit-learn's ``check_array`` does the heavy lifting (NaN/inf, 1-D input, empty data,
object arrays); these functions add what only the model knows (feature count, target shape
and range per loss). scikit-learn is imported on first use, not with the package.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Literal, overload

import numpy as np

from .ops.layout import param_name
from .ops.table import CLASSIFICATION_LOSSES

__all__ = [
    "check_count",
    "check_real",
    "nonfinite_kind",
    "check_inputs",
    "check_targets",
    "check_layer_spec",
    "check_dtype",
    "check_weights",
    "make_rng",
]


@overload
def check_count(
    value: Any, name: str, minimum: int = 1, allow_none: Literal[False] = False
) -> int: ...
@overload
def check_count(value: Any, name: str, minimum: int = 1, *, allow_none: bool) -> int | None: ...
def check_count(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Return a count (epochs, rows, widths, ...) as a Python int of at least ``minimum``.

    Any integral type is taken through ``operator.index``, so NumPy integer scalars work;
    bools and floats (even ``2.0``) are refused, since they are almost always a mistake.

    Raises
    ------
    TypeError
        A bool or a non-integral value.
    ValueError
        A value below ``minimum``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        ) from None
    if count < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {count}")
    return int(count)


def check_real(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Return a real hyperparameter as a float within ``[low, high]`` (ends open on request).

    NaN is always refused, infinities unless ``allow_inf`` (and the range admits them).

    Raises
    ------
    TypeError
        A bool, or a value that is not a real number.
    ValueError
        NaN, an infinity where not allowed, or a value outside the range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got NaN")
    if math.isinf(number) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {number}")
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {number:g}")
    return number


def nonfinite_kind(arr: np.ndarray) -> str | None:
    """``"NaN"``, ``"inf"``, ``"NaN and inf"`` for what a float array holds, or None if finite.

    Error messages say which: a NaN in data and an overflow are different problems.
    """
    finite = np.isfinite(arr)
    if finite.all():
        return None
    has_nan = bool(np.isnan(arr).any())
    has_inf = bool(np.isinf(arr).any())
    return " and ".join(k for k, present in (("NaN", has_nan), ("inf", has_inf)) if present)


def _plain_numeric(a: Any, ndims: tuple[int, ...]) -> np.ndarray | None:
    """``a`` itself when it is a plain, non-empty NumPy array of numbers with ``ndims``
    dimensions; ``None`` for anything else (lists, data frames, sparse matrices, object or
    empty arrays), which scikit-learn's ``check_array`` then converts and checks.

    scikit-learn's checks cost about a millisecond per call (data-frame detection), which
    every ``fit`` paid twice before this fast path, whatever the size of the data.
    """
    if type(a) is not np.ndarray or a.dtype.kind not in "biuf" or a.ndim not in ndims:
        return None
    return a if a.size else None


#: Inputs of at most this many numbers are tested elementwise: for a prediction's few rows
#: that costs less than entering ``np.errstate`` for the one sum of a large input.
_SMALL = 4096


def _checked_finite(a: np.ndarray, name: str) -> np.ndarray:
    """``a``, or the ``ValueError`` scikit-learn's ``check_array`` gives for NaN or inf."""
    if a.dtype.kind != "f":
        return a
    if a.size <= _SMALL:
        if np.isfinite(a).all():
            return a
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            # One sum; the elementwise test only when it is not finite (it may have overflowed).
            if math.isfinite(float(np.add.reduce(a, axis=None))):
                return a
    kind = nonfinite_kind(a)
    if kind is None:
        return a
    if "NaN" in kind:
        raise ValueError(f"Input {name} contains NaN.")
    raise ValueError(f"Input {name} contains infinity or a value too large for {a.dtype!r}.")


def check_inputs(X: Any, n_features: int, dtype: str) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D ``dtype`` array, finite, with ``n_features`` columns.

    Raises
    ------
    ValueError
        NaN or inf, empty data, 1-D or 3-D input, or the wrong number of features.
    """
    fast = _plain_numeric(X, (2,))
    if fast is not None:
        X = _checked_finite(np.ascontiguousarray(fast, dtype=dtype), "X")
    else:
        from sklearn.utils import check_array

        X = check_array(
            X, dtype=dtype, order="C", ensure_2d=True, ensure_all_finite=True, input_name="X"
        )
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the model's input layer expects {n_features}"
        )
    return X


def check_targets(y: Any, n_samples: int, n_outputs: int, loss: str, dtype: str) -> np.ndarray:
    """Return targets as a 2-D ``(n_samples, n_outputs)`` array in ``dtype``.

    ``cross_entropy`` accepts integer class labels in ``[0, n_outputs)`` (made one-hot here) or
    a one-hot/probability matrix; ``binary_cross_entropy`` accepts values in ``[0, 1]``;
    ``squared_error`` accepts any finite values. A 1-D ``y`` is taken as one column.

    Raises
    ------
    ValueError
        NaN or inf, a sample count that differs from X's, a shape that does not match the
        output layer, or values outside the loss's range.
    """
    y_arr = _plain_numeric(y, (1, 2))
    if y_arr is not None:
        y_arr = _checked_finite(y_arr, "y")
    else:
        from sklearn.utils import check_array

        y_arr = check_array(
            y, dtype=None, ensure_2d=False, ensure_all_finite=True, input_name="y",
            ensure_min_samples=1,
        )  # fmt: skip
    if y_arr.ndim > 2:
        raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y_arr.shape}")
    if y_arr.shape[0] != n_samples:
        raise ValueError(
            f"X and y have different numbers of samples: X has {n_samples}, y has {y_arr.shape[0]}"
        )
    if not np.issubdtype(y_arr.dtype, np.number) and y_arr.dtype != np.bool_:
        raise TypeError(f"y must be numeric, got dtype {y_arr.dtype}")
    if loss == "cross_entropy" and y_arr.ndim == 1:
        labels = y_arr
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("cross_entropy with 1-D y expects integer class labels")
        labels = labels.astype(np.int64)
        if labels.min() < 0 or labels.max() >= n_outputs:
            raise ValueError(
                f"class labels must lie in [0, {n_outputs}) for an output layer of width "
                f"{n_outputs}; got labels from {labels.min()} to {labels.max()}"
            )
        onehot = np.zeros((n_samples, n_outputs), dtype=dtype)
        onehot[np.arange(n_samples), labels] = 1.0
        return onehot
    y2 = y_arr.reshape(n_samples, -1) if y_arr.ndim == 1 else y_arr
    if y2.shape[1] != n_outputs:
        raise ValueError(
            f"y has {y2.shape[1]} column(s), but the model's output layer has {n_outputs}"
        )
    y2 = np.ascontiguousarray(y2, dtype=dtype)
    if loss in CLASSIFICATION_LOSSES and (y2.min() < 0 or y2.max() > 1):
        raise ValueError(
            f"{loss} expects targets in [0, 1]; got values from {y2.min()} to {y2.max()}"
        )
    return y2


def check_layer_spec(
    layers: Any, activations: Any, loss: str | None
) -> tuple[tuple[int, ...], tuple[str, ...], str]:
    """Validate layer widths, activation names and loss; fill in defaults.

    With ``activations=None`` hidden layers use relu and the output activation follows the
    loss (sigmoid for binary cross-entropy, softmax for cross-entropy, identity for squared
    error; with no loss either, sigmoid for one output and softmax for several). With
    ``loss=None`` the loss follows the output activation.
    """
    from .activations import get_activation
    from .losses import get_loss

    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a sequence of integers, got {layers!r}")
    layers = list(layers)
    try:
        widths = tuple(check_count(w, "a layer width", minimum=1) for w in layers)
    except TypeError:
        raise TypeError(f"layers must be integers, got {layers!r}") from None
    if len(widths) < 2:
        raise ValueError(f"layers needs at least an input and an output width, got {list(widths)}")
    if any(w < 1 for w in widths):
        raise ValueError(f"every layer width must be at least 1, got {list(widths)}")
    n_layers = len(widths) - 1
    if loss is not None:
        loss = get_loss(loss).name
    if activations is None:
        if loss is None:
            out = "sigmoid" if widths[-1] == 1 else "softmax"
        else:
            # the loss's matched output activation (the table's row says which)
            out = get_loss(loss).fused_activation
        activations = ["relu"] * (n_layers - 1) + [out]
    elif isinstance(activations, str):
        activations = [activations] * n_layers
    names = tuple(get_activation(a).name for a in activations)
    if len(names) != n_layers:
        raise ValueError(
            f"{len(widths)} layer widths make {n_layers} weight layers, which need {n_layers} "
            f"activations; got {len(names)}: {list(names)}"
        )
    for name in names[:-1]:
        if get_activation(name).output_only:
            raise ValueError(f"activation {name!r} is only valid on the output layer")
    if names[-1] == "softmax" and widths[-1] < 2:
        raise ValueError("a softmax output needs at least 2 units")
    if loss is None:
        # the loss matched with this output activation, else squared error
        from .ops.table import LOSSES

        matched = [n for n, fn in LOSSES.items() if fn.fused_activation == names[-1]]
        loss = matched[0] if matched else "squared_error"
    required = get_loss(loss).requires_activation
    if required is not None and names[-1] != required:
        raise ValueError(f"loss {loss!r} needs a {required!r} output activation, got {names[-1]!r}")
    return widths, names, loss


def check_dtype(dtype: Any) -> str:
    """Return ``"float32"`` or ``"float64"`` for any spelling of those dtypes.

    Raises
    ------
    ValueError
        For any other dtype.
    """
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def make_rng(seed: Any) -> np.random.Generator:
    """The model's one host random generator (weights, shuffles) from a seed."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def check_weights(weights: Any, shapes: list[tuple[int, ...]], dtype: str) -> list[np.ndarray]:
    """Validate ``[W1, b1, ...]`` against the expected shapes; return finite ``dtype`` arrays.

    The arrays returned are always new ones: training updates parameters in place, so a model
    must never share memory with the caller's arrays (or with another model built from them).

    Raises
    ------
    ValueError
        Wrong count, wrong shape, or NaN/inf values.
    """
    weights = list(weights)
    if len(weights) != len(shapes):
        raise ValueError(f"expected {len(shapes)} weight arrays [W1, b1, ...], got {len(weights)}")
    out = []
    for i, (w, shape) in enumerate(zip(weights, shapes)):
        name = param_name(i)
        arr = np.asarray(w)
        if arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        arr = np.array(arr, dtype=dtype, order="C", copy=True)
        bad = nonfinite_kind(arr)
        if bad is not None:
            raise ValueError(f"{name} contains {bad}")
        out.append(arr)
    return out
