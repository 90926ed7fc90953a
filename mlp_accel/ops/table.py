"""The math table: every activation and loss written once, as expressions.

Each activation is an :class:`ActivationRow`: its expression in ``z``, its derivative (in
``z``, or in ``a = f(z)`` where that is cheaper; derived symbolically when not given) and,
where a backend has a faster form of the same function, a per-dialect override. Each loss is
a :class:`LossRow`: its per-element value from the output logits ``z`` (and ``a``, ``y``),
its gradient ``dL/da`` and the output activation it is matched with (for which
``dL/dz = a - y`` exactly). Softmax and cross-entropy are the two rows that are not
elementwise; every dialect writes them by hand, once.

The NumPy/array-API reference, the Numba kernels and the CUDA kernels are all rendered from
these rows (see :mod:`.expr`). Adding an elementwise activation is one row.

This module imports nothing from the package outside :mod:`mlp_accel.ops`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import expr as E
from .names import lookup

__all__ = [
    "ActivationRow",
    "LossRow",
    "Activation",
    "Loss",
    "ACTIVATION_ROWS",
    "LOSS_ROWS",
    "ACTIVATIONS",
    "LOSSES",
    "CLASSIFICATION_LOSSES",
    "LEAKY_RELU_SLOPE",
    "register_activation",
    "activation_row",
    "loss_row",
    "get_activation",
    "get_loss",
    "is_builtin",
    "custom_activations",
    "custom_row",
]

Array = Any

#: Negative-side slope of ``leaky_relu``.
LEAKY_RELU_SLOPE = 0.01

# The stable logistic function from exp(-|z|), which never overflows and keeps the far
# negative tail exact (0.5 * (1 + tanh(z / 2)) rounds to 0 below z = -37): e / (1 + e) for
# z < 0, 1 / (1 + e) otherwise.
_SIGMOID = "where(z >= 0, 1, exp(-abs(z))) / (1 + exp(-abs(z)))"


@dataclass(frozen=True)
class ActivationRow:
    """One elementwise activation.

    Parameters
    ----------
    name : str
        Registry name.
    expr : str or None
        ``f(z)`` in the expression language of :mod:`.expr`; ``None`` for softmax.
    derivative : str or None
        ``f'(z)``, in ``z`` and/or ``a = f(z)``; ``None``: derived symbolically from ``expr``.
    numba : mapping
        Optional faster forms for Numba: ``{"expr": ..., "derivative": ...}`` templates over
        ``{z}``/``{a}`` that may call the generated module's helpers (``_sigmoid``,
        ``_exp_neg``, ``_log1p_unit``) and constants (``_0``, ``_1``, ``_HALF``).
    output_only : bool
        True where the activation only makes sense on the output layer.
    builtin : bool
        False for activations added by :func:`register_activation`.
    """

    name: str
    expr: str | None
    derivative: str | None = None
    numba: Mapping[str, str] = field(default_factory=dict, compare=False)
    output_only: bool = False
    builtin: bool = True
    forward_tree: E.Node | None = field(init=False, repr=False, compare=False)
    derivative_tree: E.Node | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fwd = der = None
        if self.expr is not None:
            fwd = E.parse(self.expr, ("z",))
            if self.derivative is None:
                der = E.diff(fwd, "z")
            else:
                der = E.parse(self.derivative, ("z", "a"))
        object.__setattr__(self, "forward_tree", fwd)
        object.__setattr__(self, "derivative_tree", der)

    @property
    def elementwise(self) -> bool:
        """Whether the Jacobian is diagonal (every row but softmax)."""
        return self.forward_tree is not None

    @property
    def derivative_uses_a(self) -> bool:
        """Whether the derivative reads the activation ``a`` (then it must be kept)."""
        return self.derivative_tree is not None and "a" in E.names_in(self.derivative_tree)


@dataclass(frozen=True)
class LossRow:
    """One loss, per output element (cross-entropy: per row, written by hand).

    Parameters
    ----------
    name : str
        Registry name.
    value : str or None
        The per-element loss in ``z`` (logits), ``a`` (outputs) and ``y`` (targets); the
        batch loss is its sum. ``None`` for cross-entropy (a log-sum-exp over the row).
    output_grad : str
        ``dL/da`` in ``a`` and ``y`` (used for unmatched output activations).
    matched : str
        The output activation for which ``dL/dz = a - y`` exactly.
    requires : str or None
        The only output activation the loss accepts, if any.
    numba : mapping
        Optional faster form of ``value`` for Numba: ``{"value": template over {z} {a} {y}}``.
    """

    name: str
    value: str | None
    output_grad: str
    matched: str
    requires: str | None = None
    numba: Mapping[str, str] = field(default_factory=dict, compare=False)
    value_tree: E.Node | None = field(init=False, repr=False, compare=False)
    grad_tree: E.Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = ("z", "a", "y")
        tree = None if self.value is None else E.parse(self.value, names)
        object.__setattr__(self, "value_tree", tree)
        object.__setattr__(self, "grad_tree", E.parse(self.output_grad, names))


# -- the table ---------------------------------------------------------------------------------
_EXP_NEG_ABS = "_exp_neg(-abs({z}))"

ACTIVATION_ROWS: dict[str, ActivationRow] = {
    row.name: row
    for row in (
        ActivationRow("identity", "z", "1"),
        ActivationRow("relu", "maximum(z, 0)", "where(z > 0, 1, 0)"),
        ActivationRow(
            "leaky_relu",
            f"where(z > 0, z, {LEAKY_RELU_SLOPE!r} * z)",
            f"where(z > 0, 1, {LEAKY_RELU_SLOPE!r})",
        ),
        ActivationRow("sigmoid", _SIGMOID, "a * (1 - a)", numba={"expr": "_sigmoid({z})"}),
        ActivationRow("tanh", "tanh(z)", "1 - a * a"),
        ActivationRow("softmax", None, output_only=True),
        # GELU, erf form (PyTorch's default): z * Phi(z).
        ActivationRow(
            "gelu",
            f"0.5 * z * (1 + erf(z * {1 / math.sqrt(2)!r}))",
            f"0.5 * (1 + erf(z * {1 / math.sqrt(2)!r}))"
            f" + z * {1 / math.sqrt(2 * math.pi)!r} * exp(-0.5 * z * z)",
        ),
        # SiLU (swish): z * sigmoid(z), with the stable sigmoid.
        ActivationRow(
            "silu",
            f"z * {_SIGMOID}",
            f"{_SIGMOID} * (1 + z * (1 - {_SIGMOID}))",
            numba={
                "expr": "({z} * _sigmoid({z}))",
                "derivative": "(_sigmoid({z}) * (_1 + {z} * (_1 - _sigmoid({z}))))",
            },
        ),
        # ELU with alpha 1; expm1 keeps the small negative values exact.
        ActivationRow("elu", "where(z > 0, z, expm1(minimum(z, 0)))", "where(z > 0, 1, a + 1)"),
        # softplus log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), never overflowing.
        ActivationRow(
            "softplus",
            "maximum(z, 0) + log1p(exp(-abs(z)))",
            _SIGMOID,
            numba={
                "expr": f"(_maximum({{z}}, _0) + _log1p_unit({_EXP_NEG_ABS}))",
                "derivative": "_sigmoid({z})",
            },
        ),
        # The exponential output of the Poisson loss (scikit-learn's out_activation_ "exp").
        ActivationRow("exp", "exp(z)", "a"),
    )
}

LOSS_ROWS: dict[str, LossRow] = {
    row.name: row
    for row in (
        # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y z, from the logits.
        LossRow(
            "binary_cross_entropy",
            "maximum(z, 0) - y * z + log1p(exp(-abs(z)))",
            "(a - y) / (a * (1 - a))",
            matched="sigmoid",
            requires="sigmoid",
            numba={"value": f"(_maximum({{z}}, _0) - {{y}} * {{z}} + _log1p_unit({_EXP_NEG_ABS}))"},
        ),
        # -sum_j y_j log softmax(z)_j = sum_j y_j (logsumexp(z) - z_j): per row, by hand.
        LossRow("cross_entropy", None, "-y / a", matched="softmax", requires="softmax"),
        # Half the squared error, as scikit-learn's, so identity + squared error is matched.
        LossRow("squared_error", "0.5 * (a - y) ** 2", "a - y", matched="identity"),
        # Half the Poisson deviance with a log link, as scikit-learn's poisson_loss:
        # y log(y / a) - y + a with a = exp(z), i.e. exp(z) - y z + (y log y - y).
        LossRow(
            "poisson",
            "exp(z) - y * z + where(y > 0, y * log(where(y > 0, y, 1)) - y, 0)",
            "1 - y / a",
            matched="exp",
            requires="exp",
        ),
    )
}


# -- the array-API views ---------------------------------------------------------------------
@dataclass(frozen=True)
class Activation:
    """An activation function and its derivative, evaluated with an array namespace.

    Parameters
    ----------
    name : str
        Registry name.
    forward : callable
        ``forward(z, xp) -> a``.
    derivative : callable or None
        ``derivative(z, a, xp) -> f'(z)`` elementwise; ``None`` for activations whose
        Jacobian is not diagonal (softmax), which must override :meth:`vjp` instead.
    output_only : bool
        True where the activation only makes sense on the output layer.
    vjp_fn : callable or None
        ``vjp_fn(grad, z, a, xp) -> dL/dz`` where the product with the derivative is not it.
    row : ActivationRow or None
        The table row this view renders.
    """

    name: str
    forward: Callable[..., Array]
    derivative: Callable[..., Array] | None
    output_only: bool = False
    vjp_fn: Callable[..., Array] | None = None
    row: ActivationRow | None = None

    def vjp(self, grad: Array, z: Array, a: Array, xp: Any) -> Array:
        """Return ``dL/dz`` given ``dL/da`` (a vector-Jacobian product)."""
        if self.vjp_fn is not None:
            return self.vjp_fn(grad, z, a, xp)
        return grad * self.derivative(z, a, xp)


@dataclass(frozen=True)
class Loss:
    """A loss: its batch sum from logits and its gradient with respect to the outputs.

    Parameters
    ----------
    name : str
        Registry name.
    value_sum : callable
        ``value_sum(z, yhat, y, xp) -> scalar array``: the loss summed over the batch.
    output_grad : callable
        ``output_grad(yhat, y, xp) -> dL/dyhat`` per sample (not divided by n).
    fused_activation : str
        The output activation for which ``dL/dz = yhat - y`` exactly (the matched pair).
    requires_activation : str or None
        The only output activation this loss accepts, if any.
    value_rows : callable or None
        ``value_rows(z, yhat, y, xp) -> (n,) array``: the loss of each sample.
    row : LossRow or None
        The table row this view renders.
    """

    name: str
    value_sum: Callable[..., Array]
    output_grad: Callable[..., Array]
    fused_activation: str
    requires_activation: str | None = None
    value_rows: Callable[..., Array] | None = None
    row: LossRow | None = None


def _softmax(z: Array, xp: Any) -> Array:
    shifted = z - xp.max(z, axis=1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=1, keepdims=True)


def _softmax_vjp(grad: Array, z: Array, a: Array, xp: Any) -> Array:
    # J^T g for softmax, row by row: a * (g - <g, a>).
    return a * (grad - xp.sum(grad * a, axis=1, keepdims=True))


def _identity_vjp(grad: Array, z: Array, a: Array, xp: Any) -> Array:
    return grad


def _cross_entropy_rows(z: Array, yhat: Array, y: Array, xp: Any) -> Array:
    m = xp.max(z, axis=1, keepdims=True)
    lse = m + xp.log(xp.sum(xp.exp(z - m), axis=1, keepdims=True))
    return xp.sum(y * (lse - z), axis=1)


def _activation_view(row: ActivationRow) -> Activation:
    if not row.elementwise:  # softmax
        return Activation(row.name, _softmax, None, row.output_only, _softmax_vjp, row)
    fwd, der = E.compile_xp(row.forward_tree), E.compile_xp(row.derivative_tree)

    def forward(z: Array, xp: Any) -> Array:
        return fwd({"z": z}, xp)

    def derivative(z: Array, a: Array, xp: Any) -> Array:
        return der({"z": z, "a": a}, xp)

    vjp = _identity_vjp if row.name == "identity" else None
    if row.name == "identity":  # no copy: the identity's output is its input

        def forward(z: Array, xp: Any) -> Array:
            return z

    return Activation(row.name, forward, derivative, row.output_only, vjp, row)


def _loss_view(row: LossRow) -> Loss:
    grad = E.compile_xp(row.grad_tree)

    def output_grad(yhat: Array, y: Array, xp: Any) -> Array:
        return grad({"a": yhat, "y": y}, xp)

    if row.value_tree is None:
        rows = _cross_entropy_rows
    else:
        value = E.compile_xp(row.value_tree)

        def rows(z: Array, yhat: Array, y: Array, xp: Any) -> Array:
            return xp.sum(value({"z": z, "a": yhat, "y": y}, xp), axis=1)

    def value_sum(z: Array, yhat: Array, y: Array, xp: Any) -> Array:
        return xp.sum(rows(z, yhat, y, xp))

    return Loss(row.name, value_sum, output_grad, row.matched, row.requires, rows, row)


ACTIVATIONS: dict[str, Activation] = {n: _activation_view(r) for n, r in ACTIVATION_ROWS.items()}
LOSSES: dict[str, Loss] = {n: _loss_view(r) for n, r in LOSS_ROWS.items()}

#: The losses of classifiers: their outputs are class probabilities, their targets labels.
CLASSIFICATION_LOSSES = ("binary_cross_entropy", "cross_entropy")


def _lookup(table: Mapping[str, Any], name: object, kind: str, plural: str) -> Any:
    # The package's one lookup policy: strip().lower(), sorted valid names, TypeError.
    return lookup(table, name, kind, plural)


def get_activation(name: str | Activation) -> Activation:
    """The activation called ``name`` (an :class:`Activation` passes through).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    if isinstance(name, Activation):
        return name
    return _lookup(ACTIVATIONS, name, "activation", "activations")


def get_loss(name: str | Loss) -> Loss:
    """The loss called ``name`` (a :class:`Loss` passes through).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    if isinstance(name, Loss):
        return name
    return _lookup(LOSSES, name, "loss", "losses")


def activation_row(name: str) -> ActivationRow:
    """The table row of activation ``name``."""
    return _lookup(ACTIVATION_ROWS, name, "activation", "activations")


def loss_row(name: str) -> LossRow:
    """The table row of loss ``name``."""
    return _lookup(LOSS_ROWS, name, "loss", "losses")


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in activation (not one registered at run time)."""
    row = ACTIVATION_ROWS.get(name)
    return row is not None and row.builtin


# -- user-defined activations (in .custom, which builds its rows from this table) -------------
from .custom import custom_activations, custom_row, register_activation  # noqa: E402
