"""The array-API value of an expression tree: the reference implementation every backend's
rendering is checked against, turned into nested closures once per tree."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from .tree import BinOp, Compare, Neg, Node, Num, Var

__all__ = ["evaluate", "compile_xp"]


def _erf(x: Any, xp: Any) -> Any:
    """erf of an array: the array API has none, so take SciPy's (CuPy's on a GPU)."""
    name = getattr(xp, "__name__", "")
    if "cupy" in name:
        from cupyx.scipy.special import erf

        return erf(x)
    from scipy.special import erf

    if "numpy" in name:
        return erf(x)
    import numpy as np  # any other namespace: through the host

    return xp.asarray(erf(np.asarray(x)), dtype=x.dtype)


def evaluate(node: Node, env: Mapping[str, Any], xp: Any) -> Any:
    """The value of ``node`` with arrays from ``env``, computed with namespace ``xp``.

    Numbers are Python floats in arithmetic (weak scalars keep a float32 array float32) and
    0-d arrays of the arrays' dtype as function arguments. Callers that evaluate one node
    often keep :func:`compile_xp` of it instead.
    """
    return compile_xp(node)(env, xp)


def compile_xp(node: Node) -> Callable[[Mapping[str, Any], Any], Any]:
    """``node`` as a function ``f(env, xp)`` with :func:`evaluate`'s rules: the tree is turned
    into nested closures once, so a call costs the array operations and a Python call per
    node, not a walk with type tests."""
    body = _compiled(node)

    def run(env: Mapping[str, Any], xp: Any) -> Any:
        ref = next(iter(env.values()))
        out = body(env, xp, _Constants(xp, ref))
        if isinstance(out, float):  # a constant expression
            return xp.full(ref.shape, out, dtype=ref.dtype)
        if out.shape != ref.shape:
            out = xp.broadcast_to(out, ref.shape)
        return out

    return run


_CONSTANTS: dict[tuple[Any, ...], Any] = {}


class _Constants:
    """0-d arrays for the numbers passed to functions, of the namespace, dtype and device of
    the reference array, made once per process (:data:`_CONSTANTS`)."""

    __slots__ = ("ref", "xp")

    def __init__(self, xp: Any, ref: Any) -> None:
        self.xp, self.ref = xp, ref

    def __call__(self, value: float) -> Any:
        ref = self.ref
        key = (id(self.xp), ref.dtype, getattr(ref, "device", None), value)
        const = _CONSTANTS.get(key)
        if const is None:
            const = _CONSTANTS[key] = self.xp.asarray(value, dtype=ref.dtype)
        return const


Compiled = Callable[[Mapping[str, Any], Any, _Constants], Any]


@functools.cache
def _compiled(node: Node) -> Compiled:
    """``node`` as nested closures ``f(env, xp, const)``, with :func:`evaluate`'s rules."""
    if isinstance(node, Num):
        value = node.value
        return lambda env, xp, const: value
    if isinstance(node, Var):
        name = node.name
        return lambda env, xp, const: env[name]
    if isinstance(node, Neg):
        arg = _compiled(node.arg)
        return lambda env, xp, const: -arg(env, xp, const)
    if isinstance(node, BinOp):
        left, right = _compiled(node.left), _compiled(node.right)
        if node.op == "**" and isinstance(node.right, Num) and node.right.value == 2.0:
            return lambda env, xp, const: _square(left(env, xp, const))
        op = _BINARY[node.op]
        return lambda env, xp, const: op(left(env, xp, const), right(env, xp, const))
    if isinstance(node, Compare):
        left, right, cmp = _compiled(node.left), _compiled(node.right), _COMPARE[node.op]
        return lambda env, xp, const: cmp(left(env, xp, const), right(env, xp, const))
    args = [_as_argument(a) for a in node.args]
    fn = node.fn
    if fn == "where" and node.args[1:] == (Num(1.0), Num(0.0)):
        # an indicator (relu's derivative): one cast instead of a select and a broadcast
        test = args[0]
        return lambda env, xp, const: xp.astype(test(env, xp, const), const.ref.dtype)
    if fn == "where":
        cond, if_true, if_false = args

        def where(env: Mapping[str, Any], xp: Any, const: _Constants) -> Any:
            out = xp.where(cond(env, xp, const), if_true(env, xp, const), if_false(env, xp, const))
            shape = next(iter(env.values())).shape
            return xp.broadcast_to(out, shape) if out.shape != shape else out

        return where
    if fn == "erf":
        (arg,) = args
        return lambda env, xp, const: _erf(arg(env, xp, const), xp)
    if fn in ("maximum", "minimum"):
        first, second = args
        return lambda env, xp, const: getattr(xp, fn)(first(env, xp, const), second(env, xp, const))
    (arg,) = args
    return lambda env, xp, const: getattr(xp, fn)(arg(env, xp, const))


def _as_argument(node: Node) -> Compiled:
    """A function argument: a number becomes a 0-d array of the arrays' dtype."""
    if isinstance(node, Num):
        value = node.value
        return lambda env, xp, const: const(value)
    return _compiled(node)


def _square(x: Any) -> Any:
    return x * x


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
