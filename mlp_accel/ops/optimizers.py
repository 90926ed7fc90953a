"""The optimizer table: each table optimizer's per-element update written once, as expressions.

An :class:`OptimizerRow` holds one update rule (one variant of an optimizer: RMSprop with and
without momentum are two rows). Its expressions use:

- ``p`` and ``g``: one element of a parameter tensor and of its gradient;
- the row's ``state`` names: one element of each per-element state array (moments, sums,
  velocities), read before the update and written back after it;
- the row's ``scalars``: numbers the optimizer computes on the host once per step, in double
  precision (the learning rate, ``1 - beta1``, the bias corrections);
- the row's ``tensor_scalars``: numbers the optimizer computes per tensor (the weight decay of a
  weight or of a bias);
- locals the row assigns itself.

An **elementwise** row is a list of assignments, in order, over ``p``, the state and locals;
the update of a tensor is one pass over its elements. A **layer-wise** row (LARS, LAMB) scales
each tensor's update by a ratio of norms, so it takes two passes: the first runs ``update``
(the state) and evaluates ``direction`` (the raw update ``u``), adding up ``p * p`` and
``u * u`` over the tensor (the squares in the arrays' dtype, the sums in float64); ``ratio``
(an expression of those sums ``wsq`` and ``usq``, the scalars and tensor scalars, evaluated
once per tensor in double precision) gives the tensor's step scalar ``s``; the second pass
evaluates ``direction`` again from the new state (the same operations on the same values)
and runs ``apply``.

The array-API reference (:func:`xp_update`), the Numba kernels and the CUDA kernels are all
rendered from these rows, operation for operation. A sub-expression of scalars alone
(``lr * wd``) is refused: NumPy would compute it in double precision and a float32 kernel in
float32, so such numbers are host scalars instead.

This module imports nothing from the package outside :mod:`mlp_accel.ops`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import expr as E

__all__ = ["OptimizerRow", "OPTIMIZER_ROWS", "optimizer_row", "step_scalars", "xp_update"]

Array = Any
Assignments = tuple[tuple[str, str], ...]


def _scalar_only(node: E.Node, arrays: set[str]) -> bool:
    """Whether ``node`` is a computation of scalars alone (a lone scalar or number is not)."""
    if isinstance(node, (E.Num, E.Var)):
        return False
    return not (E.names_in(node) & arrays)


def _scalar_subtrees(node: E.Node, arrays: set[str]) -> list[E.Node]:
    """The largest sub-expressions of ``node`` that compute with scalars alone."""
    if _scalar_only(node, arrays):
        return [node]
    if isinstance(node, (E.Num, E.Var)):
        return []
    if isinstance(node, E.Neg):
        return _scalar_subtrees(node.arg, arrays)
    if isinstance(node, (E.BinOp, E.Compare)):
        return _scalar_subtrees(node.left, arrays) + _scalar_subtrees(node.right, arrays)
    return [s for a in node.args for s in _scalar_subtrees(a, arrays)]


@dataclass(frozen=True)
class OptimizerRow:
    """One update rule of the optimizer table.

    Parameters
    ----------
    name : str
        The rule's name (``"rmsprop_centered"``); kernels are compiled and cached per rule.
    state : tuple of str
        The per-element state arrays, in the order the hooks pass them.
    scalars : tuple of str
        Host scalars of a step, in argument order.
    tensor_scalars : tuple of str
        Host scalars per tensor, in argument order.
    update : tuple of (target, expression)
        Assignments, in order: to a state name, to ``p`` (elementwise rows only) or to a local.
    direction, ratio : str, optional
        Layer-wise rows: the raw update ``u``, and the step scalar ``s`` from ``wsq``, ``usq``
        (the float64 sums of ``p * p`` and ``u * u`` over the tensor) and the scalars.
    apply : tuple of (target, expression)
        Layer-wise rows: the assignments of the second pass, over ``u`` and ``s``.

    Raises
    ------
    ValueError
        An expression that names something undefined, a state never written, ``p`` not
        written, or a sub-expression of scalars alone.
    """

    name: str
    state: tuple[str, ...]
    scalars: tuple[str, ...]
    tensor_scalars: tuple[str, ...]
    update: Assignments
    direction: str | None = None
    ratio: str | None = None
    apply: Assignments = ()
    update_trees: tuple[tuple[str, E.Node], ...] = field(init=False, repr=False, compare=False)
    direction_tree: E.Node | None = field(init=False, repr=False, compare=False)
    ratio_tree: E.Node | None = field(init=False, repr=False, compare=False)
    apply_trees: tuple[tuple[str, E.Node], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.direction is None) != (self.ratio is None) or (
            self.direction is None and self.apply
        ):
            raise ValueError(f"{self.name}: a layer-wise row has direction, ratio and apply")
        host = set(self.scalars) | set(self.tensor_scalars)
        arrays = {"p", "g", *self.state}
        known = arrays | host
        update = self._assignments(self.update, known, arrays, layerwise=self.layerwise)
        object.__setattr__(self, "update_trees", update)
        direction = ratio = None
        apply: tuple[tuple[str, E.Node], ...] = ()
        if self.direction is not None and self.ratio is not None:
            # The second pass knows p, g, the state and the scalars, not the first's locals.
            direction = self._parse(self.direction, known, arrays, "direction")
            ratio = E.parse(self.ratio, tuple(sorted(host | {"wsq", "usq"})))
            second = known | {"u", "s"}
            apply = self._assignments(self.apply, second, arrays | {"u"}, layerwise=False)
        object.__setattr__(self, "direction_tree", direction)
        object.__setattr__(self, "ratio_tree", ratio)
        object.__setattr__(self, "apply_trees", apply)
        written = {target for target, _ in (*self.update, *self.apply)}
        missing = [name for name in ("p", *self.state) if name not in written]
        if missing:
            raise ValueError(f"{self.name}: the rule never writes {', '.join(missing)}")

    def _parse(self, text: str, known: set[str], arrays: set[str], what: str) -> E.Node:
        tree = E.parse(text, tuple(sorted(known)))
        scalar_parts = _scalar_subtrees(tree, arrays)
        if scalar_parts:
            raise ValueError(
                f"{self.name}: {what} computes with scalars alone ({text!r}): make that a "
                "host scalar, so that every dtype and backend uses the same number"
            )
        return tree

    def _assignments(
        self, items: Assignments, known: set[str], arrays: set[str], layerwise: bool
    ) -> tuple[tuple[str, E.Node], ...]:
        known, arrays = set(known), set(arrays)
        out = []
        for target, text in items:
            if target == "g" or target in self.scalars or target in self.tensor_scalars:
                raise ValueError(f"{self.name}: {target!r} is read-only")
            if target == "p" and layerwise:
                raise ValueError(f"{self.name}: a layer-wise row writes p in apply")
            out.append((target, self._parse(text, known, arrays, f"{target} = ...")))
            known.add(target)
            arrays.add(target)
        return tuple(out)

    @property
    def layerwise(self) -> bool:
        """Whether each tensor's step is scaled by a ratio of norms (two passes)."""
        return self.direction is not None

    def reads(self, trees: Sequence[E.Node]) -> list[str]:
        """The arrays (``p``, ``g``, state) that ``trees`` read, in argument order."""
        used: set[str] = set()
        for tree in trees:
            used |= E.names_in(tree)
        return [name for name in ("p", "g", *self.state) if name in used]


HostFunction = Callable[[Mapping[str, float]], float]


def _divide(a: float, b: float) -> float:
    """``a / b`` as IEEE doubles divide (Python raises on a zero divisor)."""
    if b != 0:
        return a / b
    if a == 0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _numpy_call(fn: str, args: list[HostFunction]) -> HostFunction:
    ufunc = getattr(np, fn)

    def call(env: Mapping[str, float]) -> float:
        with np.errstate(all="ignore"):
            return float(ufunc(*(np.float64(a(env)) for a in args)))

    return call


_HOST_OPS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
}
_HOST_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_HOST_COMPARE.update({"==": operator.eq, "!=": operator.ne})


@functools.cache
def _host_function(tree: E.Node) -> HostFunction:
    """``tree`` of host numbers as closures over Python floats: IEEE double arithmetic, as
    NumPy's float64, at a microsecond a call (a ratio is evaluated per tensor per step).
    ``where`` evaluates only the branch it takes."""
    if isinstance(tree, E.Num):
        value = tree.value
        return lambda env: value
    if isinstance(tree, E.Var):
        name = tree.name
        return lambda env: env[name]
    if isinstance(tree, E.Neg):
        arg = _host_function(tree.arg)
        return lambda env: -arg(env)
    if isinstance(tree, (E.BinOp, E.Compare)):
        left, right = _host_function(tree.left), _host_function(tree.right)
        op = _HOST_COMPARE.get(tree.op) if isinstance(tree, E.Compare) else _HOST_OPS.get(tree.op)
        if op is None:  # a power: NumPy's, for its overflow and domain rules
            return _numpy_call("power", [left, right])
        return lambda env: op(left(env), right(env))
    args = [_host_function(a) for a in tree.args]
    if tree.fn == "where":
        test, yes, no = args
        return lambda env: yes(env) if test(env) else no(env)
    if tree.fn == "sqrt":
        (arg,) = args
        return lambda env: math.sqrt(x) if (x := arg(env)) >= 0 else math.nan
    return _numpy_call(
        {"abs": "fabs", "maximum": "maximum", "minimum": "minimum"}.get(tree.fn, tree.fn), args
    )


def step_scalars(
    row: OptimizerRow,
    scalars: Sequence[float],
    tensor_scalars: Sequence[Sequence[float]],
    sums: Sequence[tuple[float, float]],
) -> list[float]:
    """The step scalar ``s`` of each tensor of a layer-wise ``row``: its ``ratio`` evaluated in
    double precision on the host, from the tensor's sums ``(wsq, usq)``."""
    if row.ratio_tree is None:
        raise ValueError(f"{row.name} is not a layer-wise rule")
    ratio = _host_function(row.ratio_tree)
    host = dict(zip(row.scalars, scalars))
    return [
        ratio({**host, **dict(zip(row.tensor_scalars, ts)), "wsq": wsq, "usq": usq})
        for ts, (wsq, usq) in zip(tensor_scalars, sums)
    ]


_ADAM_SCALARS = ("lr", "beta1", "rest1", "beta2", "rest2", "eps", "c1", "c2")
_MOMENTS = (("m", "beta1 * m + rest1 * g"), ("v", "beta2 * v + rest2 * (g * g)"))
# Coupled weight decay (PyTorch's RMSprop and Adagrad): the L2 term joins the gradient.
_COUPLED = ("gw", "g + wd * p")
_SQUARES = ("square_avg", "rho * square_avg + rest * (gw * gw)")
_CENTERED = ("grad_avg", "rho * grad_avg + rest * gw")
_TRUST = "where(wsq > 0, where(usq > 0, {}, 1), 1)"


def _rmsprop(centered: bool, momentum: bool) -> OptimizerRow:
    square = "sqrt(square_avg - grad_avg * grad_avg)" if centered else "sqrt(square_avg)"
    name = "rmsprop" + ("_centered" if centered else "") + ("_momentum" if momentum else "")
    update: list[tuple[str, str]] = [_COUPLED, _SQUARES]
    if centered:
        update.append(_CENTERED)
    if momentum:
        update.append(("momentum_buffer", f"mu * momentum_buffer + gw / ({square} + eps)"))
        update.append(("p", "p - lr * momentum_buffer"))
    else:
        update.append(("p", f"p - lr * (gw / ({square} + eps))"))
    state = ("square_avg",) + ("grad_avg",) * centered + ("momentum_buffer",) * momentum
    return OptimizerRow(
        name,
        state,
        ("lr", "rho", "rest", "eps") + (("mu",) if momentum else ()),
        ("wd",),
        tuple(update),
    )


def _lars(nesterov: bool) -> OptimizerRow:
    step = "p - (s * u + mu * velocity)" if nesterov else "p - velocity"
    trust = _TRUST.format("tc * sqrt(wsq) / (sqrt(usq) + eps)")
    return OptimizerRow(
        "lars_nesterov" if nesterov else "lars",
        ("velocity",),
        ("lr", "mu", "tc", "eps"),
        ("wd", "adapt"),
        (),
        direction="g + wd * p",
        ratio=f"lr * where(adapt > 0, {trust}, 1)",
        apply=(("velocity", "mu * velocity + s * u"), ("p", step)),
    )


#: Every rule of the table, by name.
OPTIMIZER_ROWS: dict[str, OptimizerRow] = {
    row.name: row
    for row in (
        # AdamW: PyTorch's decoupled decay (p * (1 - lr * wd)), then Adam's step in the
        # operations of Backend.adam_update, so that weight_decay=0 is Adam bit for bit.
        OptimizerRow(
            "adamw",
            ("m", "v"),
            _ADAM_SCALARS,
            ("decay",),
            (*_MOMENTS, ("p", "p * decay - lr * (m / c1) / (sqrt(v / c2) + eps)")),
        ),
        *(_rmsprop(c, m) for c in (False, True) for m in (False, True)),
        OptimizerRow(
            "adagrad",
            ("sum",),
            ("lr", "eps"),
            ("wd",),
            (_COUPLED, ("sum", "sum + gw * gw"), ("p", "p - lr * (gw / (sqrt(sum) + eps))")),
        ),
        # LAMB as optax's lamb: Adam's bias-corrected direction plus the decay, times the
        # trust ratio ||p|| / ||u|| (1 where either norm is 0).
        OptimizerRow(
            "lamb",
            ("m", "v"),
            _ADAM_SCALARS,
            ("wd",),
            _MOMENTS,
            direction="(m / c1) / (sqrt(v / c2) + eps) + wd * p",
            ratio="lr * " + _TRUST.format("sqrt(wsq) / sqrt(usq)"),
            apply=(("p", "p - s * u"),),
        ),
        _lars(False),
        _lars(True),
    )
}


def optimizer_row(name: str) -> OptimizerRow:
    """The table's rule ``name``.

    Raises
    ------
    ValueError
        No such rule; the message lists the rules.
    """
    row = OPTIMIZER_ROWS.get(name)
    if row is None:
        raise ValueError(f"unknown optimizer rule {name!r}; rules: {', '.join(OPTIMIZER_ROWS)}")
    return row


# -- the array-API reference ------------------------------------------------------------------
def _run(trees: Sequence[tuple[str, E.Node]], env: dict[str, Any], xp: Any) -> None:
    """Run assignments, in order, into ``env``."""
    for target, tree in trees:
        env[target] = E.compile_xp(tree)(env, xp)


def _sum_squares(x: Array, xp: Any) -> float:
    """``sum(x * x)``: the squares in ``x``'s dtype, added in float64 in NumPy's fixed pairwise
    order (never BLAS, whose sums depend on its thread count)."""
    return float(xp.sum(x * x, dtype=xp.float64))


def xp_update(
    row: OptimizerRow,
    params: list[Array],
    grads: list[Array],
    state: list[list[Array]],
    scalars: Sequence[float],
    tensor_scalars: Sequence[Sequence[float]],
    xp: Any,
) -> tuple[list[Array], list[list[Array]]]:
    """One step of ``row`` with namespace ``xp``: the reference every kernel is checked against.

    ``state[i][k]`` is state ``row.state[i]`` of tensor ``k``; returns new arrays (the array
    API has no ``out=``): ``(params, state)``.
    """
    host = dict(zip(row.scalars, scalars))
    envs: list[dict[str, Any]] = []
    for k, (p, g) in enumerate(zip(params, grads)):
        # p first: the evaluator takes the shape and dtype of its first entry.
        env: dict[str, Any] = {"p": p, "g": g}
        env.update({name: arrays[k] for name, arrays in zip(row.state, state)})
        env.update(host)
        env.update(zip(row.tensor_scalars, tensor_scalars[k]))
        _run(row.update_trees, env, xp)
        envs.append(env)
    if row.layerwise:
        assert row.direction_tree is not None
        direction = E.compile_xp(row.direction_tree)
        sums = []
        for env in envs:
            env["u"] = direction(env, xp)
            sums.append((_sum_squares(env["p"], xp), _sum_squares(env["u"], xp)))
        for env, s in zip(envs, step_scalars(row, scalars, tensor_scalars, sums)):
            env["s"] = s
            _run(row.apply_trees, env, xp)
    return [env["p"] for env in envs], [[env[name] for env in envs] for name in row.state]
