"""User-defined activations: the process-wide registry of names, and the rows models run.

Two things are kept apart:

- **names**: :func:`register_activation` adds ``name -> formula`` to the process-wide table,
  so that ``MLP(activations=["mish"])`` and the estimators' ``activation="mish"`` find it;
- **formulas**: a model never runs a user-defined activation under its name. It carries its
  own ``name -> formula`` table (:attr:`mlp_accel.MLP.activation_table`), and each formula
  runs under a key derived from its text (:func:`formula_key`, ``"__expr_<hash>"``), which
  can mean no other formula. The backends look the key up like any row of the table.

So a model loaded from a file or unpickled brings its formulas with it and registers no
name: two models using one name for two formulas live side by side, and a name registered in
one process is not needed in another. Names starting with ``__`` are reserved for the keys.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from . import expr as E
from .table import ACTIVATION_ROWS, ACTIVATIONS, Activation, ActivationRow, _activation_view

__all__ = [
    "register_activation",
    "custom_activations",
    "custom_row",
    "checked_name",
    "formula_key",
    "formula_activation",
    "model_activations",
    "registered_formulas",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_RESERVED = "__"
_KEY_PREFIX = "__expr_"
_lock = threading.Lock()


def register_activation(name: str, expr: str, derivative: str | None = None) -> None:
    """Add an elementwise activation written as an expression in ``z``.

    The expression may use numbers, the name ``z``, ``+ - * / **``, unary minus,
    ``exp expm1 log log1p tanh erf sqrt abs``, ``maximum(x, y)``, ``minimum(x, y)`` and
    ``where(condition, x, y)`` with a comparison as the condition. Nothing else is accepted
    and the text is never evaluated as Python. Parts without ``z`` are computed once, in
    float64, and must be finite within float32's range. Limits (see
    ``mlp_accel.ops.expr.tree``): 2,000 characters, 400 nodes, 32 levels of nesting and
    20,000 characters of generated code for the expression and its derivative.

    Once registered, ``name`` works in ``MLP(activations=...)``, in the estimators and on
    every backend. A model (and a fitted estimator) keeps the formula in its own table, so it
    saves, pickles and runs in other processes (scikit-learn's ``n_jobs``, Dask workers)
    without the name being registered there; loading or unpickling registers nothing.

    Parameters
    ----------
    name : str
        A new name (letters, digits, underscores; not starting with ``__``), not a built-in.
    expr : str
        ``f(z)``, e.g. ``"z * tanh(log1p(exp(z)))"``.
    derivative : str, optional
        ``f'(z)`` in ``z``; derived symbolically when omitted.

    Raises
    ------
    TypeError
        If an argument is not a string.
    ValueError
        For a bad or reserved name, a built-in name, a name already registered with another
        expression, or an expression outside the language or its limits (the message names
        the offending token). Nothing is registered then.
    """
    name = checked_name(name, reserved_ok=True)
    _check_formula_types(expr, derivative)
    if name.startswith(_RESERVED):
        # A formula's own key (a compiling child process installs the rows it is sent).
        if name == formula_key(expr, derivative):
            formula_activation(expr, derivative)
            return
        raise ValueError(f"activation names starting with {_RESERVED!r} are reserved: {name!r}")
    row, view = custom_row(name, expr, derivative)
    with _lock:
        current = ACTIVATION_ROWS.get(name)
        if current is not None:
            if (current.expr, current.derivative) != (expr, derivative):
                raise ValueError(
                    f"activation {name!r} is already registered as {current.expr!r}; "
                    "choose another name"
                )
            return
        ACTIVATION_ROWS[name] = row
        ACTIVATIONS[name] = view


def checked_name(name: str, reserved_ok: bool = False) -> str:
    """The lower-case form of a new activation's ``name``, refused where it cannot be one.

    Parameters
    ----------
    name : str
        Letters, digits and underscores, not starting with a digit, at most 64 characters.
    reserved_ok : bool, default False
        Let a name starting with ``__`` (a formula's key) through, for the caller to check.

    Returns
    -------
    str
        ``name.lower()``: names are looked up case-insensitively.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        For a malformed name, a built-in one, or (unless ``reserved_ok``) a reserved one.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a string, got {type(name).__name__}")
    if not _NAME.match(name):
        raise ValueError(
            f"activation name {name!r} must be letters, digits and underscores "
            "(not starting with a digit, at most 64 characters)"
        )
    name = name.lower()
    if name.startswith(_RESERVED) and not reserved_ok:
        raise ValueError(f"activation names starting with {_RESERVED!r} are reserved: {name!r}")
    row = ACTIVATION_ROWS.get(name)
    if row is not None and row.builtin:
        raise ValueError(f"{name!r} is a built-in activation and cannot be redefined")
    return name


def _check_formula_types(expr: Any, derivative: Any) -> None:
    if derivative is not None and not isinstance(derivative, str):
        raise TypeError(f"derivative must be a string or None, got {type(derivative).__name__}")
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a string, got {type(expr).__name__}")


def custom_row(
    name: str, expr: str, derivative: str | None, label: str | None = None
) -> tuple[ActivationRow, Activation]:
    """The checked row of a user-defined activation and its array-API view, built whole
    before anything is stored, so a refusal leaves nothing behind.

    Raises
    ------
    ValueError
        For an expression outside the language or beyond its limits (length, nodes, nesting,
        rendered size), or a constant that is not finite; the message names the activation
        (``label``, default ``name``).
    """
    label = name if label is None else label
    try:
        if derivative is not None:
            E.parse(derivative, ("z",))  # a user's derivative is in z only
        row = ActivationRow(name, expr, derivative, builtin=False)
        E.check_renderable(row.forward_tree, "the expression")
        E.check_renderable(row.derivative_tree, "its derivative")
        return row, _activation_view(row)
    except ValueError as exc:
        raise ValueError(f"activation {label!r}: {exc}") from None
    except (RecursionError, MemoryError, OverflowError) as exc:
        why = type(exc).__name__
        raise ValueError(f"activation {label!r}: the expression is too large ({why})") from None


def formula_key(expr: str, derivative: str | None) -> str:
    """The name a formula runs under: ``"__expr_"`` and a hash of its text."""
    digest = hashlib.sha256(json.dumps([expr, derivative]).encode("utf-8")).hexdigest()
    return _KEY_PREFIX + digest[:24]


def formula_activation(expr: str, derivative: str | None, label: str | None = None) -> str:
    """Check a formula, make its row available under :func:`formula_key`, return the key.

    Raises
    ------
    ValueError
        As :func:`register_activation` for the expression; the message names ``label``.
    """
    key = formula_key(expr, derivative)
    if key in ACTIVATION_ROWS:
        return key
    row, view = custom_row(key, expr, derivative, label or key)
    with _lock:
        ACTIVATION_ROWS.setdefault(key, row)
        ACTIVATIONS.setdefault(key, view)
    return key


def custom_activations(names: Any) -> dict[str, dict[str, str | None]]:
    """``{name: {"expr": ..., "derivative": ...}}`` of the rows (not built-in) of ``names``."""
    out: dict[str, dict[str, str | None]] = {}
    for name in names:
        row = ACTIVATION_ROWS.get(name)
        if row is not None and not row.builtin:
            out[name] = {"expr": row.expr, "derivative": row.derivative}
    return out


def registered_formulas() -> dict[str, dict[str, str | None]]:
    """The names registered with :func:`register_activation` in this process, and formulas."""
    names = [n for n in list(ACTIVATION_ROWS) if not n.startswith(_RESERVED)]
    return custom_activations(names)


def _own_table(table: Any) -> dict[str, dict[str, str | None]]:
    """A model's ``name -> {"expr", "derivative"}`` table, checked and with lower-case names."""
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise TypeError(f"custom_activations must be a mapping, got {type(table).__name__}")
    out: dict[str, dict[str, str | None]] = {}
    for name, spec in table.items():
        if not isinstance(name, str) or not isinstance(spec, Mapping):
            raise TypeError(
                f"custom_activations must map names to {{'expr': ..., 'derivative': ...}}, "
                f"got {name!r}: {spec!r}"[:200]
            )
        expr, derivative = spec.get("expr"), spec.get("derivative")
        _check_formula_types(expr, derivative)
        out[name.strip().lower()] = {"expr": expr, "derivative": derivative}
    return out


def model_activations(
    activations: Any, table: Any
) -> tuple[Any, dict[str, dict[str, str | None]], dict[str, str]]:
    """Resolve a model's activation names to the rows it runs.

    Parameters
    ----------
    activations : None, str or sequence
        As ``MLP(activations=...)``; anything that is not a name passes through unchanged
        (the layer check reports it).
    table : mapping or None
        The model's own ``name -> {"expr", "derivative"}`` formulas; names not in it are
        looked up among the registered ones.

    Returns
    -------
    tuple
        ``(activations with every user-defined name replaced by its formula key, the model's
        table of the user-defined names it uses, {key: name})``.
    """
    own = _own_table(table)
    registered = registered_formulas()
    used: dict[str, dict[str, str | None]] = {}
    names: dict[str, str] = {}

    def resolve(a: Any) -> Any:
        if not isinstance(a, str):
            return a
        name = a.strip().lower()
        spec = own.get(name) or registered.get(name)
        if spec is None:
            return a
        key = formula_activation(spec["expr"], spec["derivative"], label=name)
        used[name] = dict(spec)
        names.setdefault(key, name)
        return key

    if activations is None:
        return None, used, names
    if isinstance(activations, str):
        return resolve(activations), used, names
    if not isinstance(activations, Iterable):
        return activations, used, names
    return [resolve(a) for a in activations], used, names
