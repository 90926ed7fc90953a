"""The NumPy backend's ``optimizer_update``: the optimizer table's rules evaluated in place.

The same expression trees as the array-API reference (:func:`mlp_accel.ops.optimizers.
xp_update`), operation for operation and so bit for bit, but with NumPy's ``out=``: each
assignment's last operation writes straight into its state array (or the parameter), and
the operations inside it into a few scratch buffers reused within the tensor's update. The
reference allocates a new array per operation; for a memory-bound update that is most of
its time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops import expr as E
from ..ops.optimizers import OptimizerRow, step_scalars

__all__ = ["inplace_update"]

_BINARY: dict[str, Callable[..., Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "**": np.power,
}
_UNARY: dict[str, Callable[..., Any]] = {
    "sqrt": np.sqrt,
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "abs": np.abs,
}


class _Evaluator:
    """Evaluates trees over one tensor's arrays, drawing scratch buffers from a free list."""

    def __init__(self, env: dict[str, Any], like: np.ndarray) -> None:
        self.env = env
        self.like = like
        self.free: list[np.ndarray] = []
        self.scratch: set[int] = set()

    def _buffer(self) -> np.ndarray:
        if self.free:
            return self.free.pop()
        buf = np.empty_like(self.like)
        self.scratch.add(id(buf))
        return buf

    def _release(self, *values: Any) -> None:
        for v in values:
            if isinstance(v, np.ndarray) and id(v) in self.scratch:
                self.free.append(v)

    def _is_scratch(self, value: Any) -> bool:
        return isinstance(value, np.ndarray) and id(value) in self.scratch

    def evaluate(self, node: E.Node, out: np.ndarray | None = None) -> Any:
        """The value of ``node``: a float, an array of the environment, or ``out`` (or a
        scratch buffer) holding the result of its last operation."""
        if isinstance(node, E.Num):
            return node.value
        if isinstance(node, E.Var):
            return self.env[node.name]
        if isinstance(node, E.Neg):
            arg = self.evaluate(node.arg)
            target = out if out is not None else arg if self._is_scratch(arg) else self._buffer()
            return np.negative(arg, out=target)
        if isinstance(node, E.BinOp):
            a, b = self.evaluate(node.left), self.evaluate(node.right)
            if node.op == "**" and isinstance(node.right, E.Num) and node.right.value == 2.0:
                b = a  # x ** 2 as x * x, as the reference computes it
                ufunc = np.multiply
            else:
                ufunc = _BINARY[node.op]
            if out is not None:
                target = out
            elif self._is_scratch(a):
                target = a
            elif self._is_scratch(b):
                target = b
            else:
                target = self._buffer()
            ufunc(a, b, out=target)
            self._release(*(v for v in (a, b) if v is not target))
            return target
        if isinstance(node, E.Call) and node.fn in _UNARY:
            arg = self.evaluate(node.args[0])
            target = out if out is not None else arg if self._is_scratch(arg) else self._buffer()
            return _UNARY[node.fn](arg, out=target)
        # anything else (where, maximum, erf): the reference's evaluation, then a copy
        value = E.compile_xp(node)(self.env, np)
        target = out if out is not None else self._buffer()
        np.copyto(target, value)
        return target

    def assign(self, target: str, node: E.Node, arrays: dict[str, np.ndarray]) -> None:
        """``target = node``: into the target's own array (state, ``p``), or a kept buffer."""
        if target in arrays:
            self.evaluate(node, out=arrays[target])
            return
        value = self.evaluate(node)
        if not self._is_scratch(value):
            copy = self._buffer()
            np.copyto(copy, value)
            value = copy
        self.scratch.discard(id(value))  # a local lives to the end of the tensor's update
        self.env[target] = value


def inplace_update(
    row: OptimizerRow,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    state: list[list[np.ndarray]],
    scalars: tuple[float, ...],
    tensor_scalars: list[tuple[float, ...]],
) -> None:
    """Run ``row`` over NumPy arrays, updating ``params`` and ``state`` in place."""
    host = dict(zip(row.scalars, scalars))
    evaluators = []
    for k, (p, g) in enumerate(zip(params, grads)):
        arrays = {"p": p, **{name: lst[k] for name, lst in zip(row.state, state)}}
        env: dict[str, Any] = {**arrays, "g": g, **host}
        env.update(zip(row.tensor_scalars, tensor_scalars[k]))
        ev = _Evaluator(env, p)
        for target, tree in row.update_trees:
            ev.assign(target, tree, arrays)
        evaluators.append((ev, arrays))
    if not row.layerwise:
        return
    assert row.direction_tree is not None
    sums = []
    for ev, _ in evaluators:
        ev.assign("u", row.direction_tree, {})
        u, p = ev.env["u"], ev.env["p"]
        sums.append(
            (float(np.sum(p * p, dtype=np.float64)), float(np.sum(u * u, dtype=np.float64)))
        )
    for (ev, arrays), s in zip(evaluators, step_scalars(row, scalars, tensor_scalars, sums)):
        ev.env["s"] = s
        for target, tree in row.apply_trees:
            ev.assign(target, tree, arrays)
