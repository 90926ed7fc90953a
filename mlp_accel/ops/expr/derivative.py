"""The symbolic derivative of an expression tree, built with light simplification (``0 * x``
of a structurally zero term, ``1 * x``, ``x + 0``, ...), and the names an expression uses."""

from __future__ import annotations

import math

from .tree import BinOp, Call, Compare, Neg, Node, Num, Var, negate

__all__ = ["diff", "names_in"]


# -- construction with light simplification --------------------------------------------------
def _num(x: Node, value: float) -> bool:
    return isinstance(x, Num) and x.value == value


def _add(a: Node, b: Node) -> Node:
    if isinstance(a, Num) and isinstance(b, Num):
        return Num(a.value + b.value)
    if _num(a, 0.0):
        return b
    if _num(b, 0.0):
        return a
    if isinstance(b, Neg):
        return _sub(a, b.arg)
    return BinOp("+", a, b)


def _sub(a: Node, b: Node) -> Node:
    if isinstance(a, Num) and isinstance(b, Num):
        return Num(a.value - b.value)
    if _num(b, 0.0):
        return a
    if _num(a, 0.0):
        return negate(b)
    return BinOp("-", a, b)


def _mul(a: Node, b: Node) -> Node:
    # 0 * x -> 0 drops a NaN of x; only derivatives are built this way, where the term is
    # structurally zero (the derivative of a constant), not a computed zero.
    if isinstance(a, Num) and isinstance(b, Num):
        return Num(a.value * b.value)
    if _num(a, 0.0) or _num(b, 0.0):
        return Num(0.0)
    if _num(a, 1.0):
        return b
    if _num(b, 1.0):
        return a
    if _num(a, -1.0):
        return negate(b)
    if _num(b, -1.0):
        return negate(a)
    return BinOp("*", a, b)


def _div(a: Node, b: Node) -> Node:
    if _num(a, 0.0):
        return Num(0.0)
    if _num(b, 1.0):
        return a
    return BinOp("/", a, b)


def _where(c: Node, x: Node, y: Node) -> Node:
    if x == y:
        return x
    return Call("where", (c, x, y))


# -- derivative ------------------------------------------------------------------------------
def diff(node: Node, var: str = "z") -> Node:
    """The derivative of ``node`` with respect to ``var``, lightly simplified.

    ``abs``, ``maximum``, ``minimum`` and ``where`` are differentiated piecewise; at a tie
    ``maximum(z, 0)`` takes the derivative of the second argument (0, as relu's).
    """
    if isinstance(node, Num):
        return Num(0.0)
    if isinstance(node, Var):
        return Num(1.0 if node.name == var else 0.0)
    if isinstance(node, Neg):
        return negate(diff(node.arg, var))
    if isinstance(node, BinOp):
        u, v = node.left, node.right
        du, dv = diff(u, var), diff(v, var)
        if node.op == "+":
            return _add(du, dv)
        if node.op == "-":
            return _sub(du, dv)
        if node.op == "*":
            return _add(_mul(du, v), _mul(u, dv))
        if node.op == "/":
            if _num(dv, 0.0):
                return _div(du, v)
            return _div(_sub(_mul(du, v), _mul(u, dv)), BinOp("**", v, Num(2.0)))
        # power
        if isinstance(v, Num):
            if v.value == 0.0:
                return Num(0.0)
            power = u if v.value == 2.0 else BinOp("**", u, Num(v.value - 1.0))
            return _mul(_mul(Num(v.value), power), du)
        # u**v = exp(v log u): d = u**v (v' log u + v u' / u)
        inner = _add(_mul(dv, Call("log", (u,))), _div(_mul(v, du), u))
        return _mul(node, inner)
    if isinstance(node, Call):
        fn, args = node.fn, node.args
        if fn == "where":
            return _where(args[0], diff(args[1], var), diff(args[2], var))
        if fn == "maximum":
            a, b = args
            return _where(Compare(">", a, b), diff(a, var), diff(b, var))
        if fn == "minimum":
            a, b = args
            return _where(Compare("<", a, b), diff(a, var), diff(b, var))
        (u,) = args
        du = diff(u, var)
        if _num(du, 0.0):
            return Num(0.0)
        if fn == "exp":
            outer: Node = node
        elif fn == "expm1":
            outer = Call("exp", (u,))
        elif fn == "log":
            return _div(du, u)
        elif fn == "log1p":
            return _div(du, _add(Num(1.0), u))
        elif fn == "tanh":
            outer = _sub(Num(1.0), BinOp("**", node, Num(2.0)))
        elif fn == "erf":
            scale = Num(2.0 / math.sqrt(math.pi))
            outer = _mul(scale, Call("exp", (negate(BinOp("**", u, Num(2.0))),)))
        elif fn == "sqrt":
            return _div(du, _mul(Num(2.0), node))
        elif fn == "abs":
            return _where(Compare(">=", u, Num(0.0)), du, negate(du))
        else:  # pragma: no cover - FUNCTIONS and this chain are kept in step
            raise ValueError(f"no derivative rule for {fn!r}")
        return _mul(outer, du)
    raise ValueError(f"cannot differentiate a comparison: {node!r}")


def names_in(node: Node) -> set[str]:
    """The variable names an expression uses."""
    if isinstance(node, Var):
        return {node.name}
    if isinstance(node, Num):
        return set()
    if isinstance(node, Neg):
        return names_in(node.arg)
    if isinstance(node, (BinOp, Compare)):
        return names_in(node.left) | names_in(node.right)
    out: set[str] = set()
    for a in node.args:
        out |= names_in(a)
    return out
