"""The ONNX renderer of an expression tree: :func:`to_onnx` adds the nodes computing an
expression to an :class:`OnnxGraph` (the fourth renderer, beside the array-API, Numba and CUDA
ones), so every activation of the table, registered ones included, exports.

Each construct becomes the ONNX operator of the same IEEE operation (``+`` ``Add``, ``exp``
``Exp``, ``maximum`` ``Max``, which propagates NaN as NumPy's does, ``where`` ``Where``, a
comparison ``Greater``/``Less``/...; ``x ** 2`` a product, as the array-API evaluator computes
it). Three functions have no faithful operator and are built from others:

- ``log1p(x)`` (ONNX has none; ``log(1 + x)`` loses every digit of a tiny ``x``): Goldberg's
  ``x * (log(u) / (u - 1))`` with ``u = 1 + x``, ``x`` where ``u == 1``, ``u`` where ``u`` is
  infinite;
- ``expm1(x)`` (none either; ``exp(x) - 1`` cancels near 0): Kahan's ``(u - 1) * (x / log(u))``
  with ``u = exp(x)``, ``x`` where ``u == 1``, ``-1`` where ``u - 1 == -1``, ``u`` where ``u``
  is infinite;
- ``erf`` in float64 (onnxruntime runs ``Erf`` in float32 only): the Chebyshev interpolants
  the Numba helpers use (:mod:`.erf_series`), within 1e-15 of ``erf``.

``Where`` evaluates both branches: a branch that is NaN or infinite off its domain (``0 / 0``
at ``u == 1``) is computed but never selected there, and the products are ordered so that no
finite input overflows in the selected one. This module imports ``onnx`` only when a graph
is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .erf_series import ERF_HEAD, ERF_MAX, ERF_TAIL
from .tree import BinOp, Compare, Neg, Node, Num, Var

__all__ = ["OnnxGraph", "to_onnx"]

_BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "**": "Pow"}
_COMPARE = {
    ">": "Greater",
    ">=": "GreaterOrEqual",
    "<": "Less",
    "<=": "LessOrEqual",
    "==": "Equal",
}
_UNARY = {"exp": "Exp", "log": "Log", "tanh": "Tanh", "sqrt": "Sqrt", "abs": "Abs"}


class OnnxGraph:
    """The nodes and initializers of an ONNX graph being built, computing in one float dtype.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        The dtype of the graph's arithmetic and of its numeric constants.
    """

    def __init__(self, dtype: str) -> None:
        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._constants: dict[str, str] = {}
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        """A tensor name not used before in this graph, from ``hint``."""
        name, n = hint, 0
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        """Add the node ``op_type(inputs, **attrs)``; returns its output's name."""
        from onnx import helper

        name = out if out is not None else self.fresh(op_type.lower())
        self._used.add(name)
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), [name], name=self.fresh(f"node_{name}"), **attrs
            )
        )
        return name

    def tensor(self, hint: str, value: Any, dtype: Any = None) -> str:
        """Add ``value`` as an initializer (in ``dtype``, default the graph's); returns its name."""
        from onnx import numpy_helper

        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, value: float) -> str:
        """The name of a scalar constant of the graph's dtype (one initializer per value)."""
        key = repr(float(value))  # "-0.0" and "0.0" apart
        name = self._constants.get(key)
        if name is None:
            name = self._constants[key] = self.tensor("const", value)
        return name


def to_onnx(node: Node, names: Mapping[str, str], graph: OnnxGraph) -> str:
    """Add the nodes computing ``node`` to ``graph``; returns the name of the result.

    Parameters
    ----------
    node : Node
        The expression.
    names : mapping
        Variable name -> the name of the graph's tensor that holds it (all of one shape).
    graph : OnnxGraph
        Where the nodes go; its dtype is the arithmetic's.

    Returns
    -------
    str
        The tensor holding the value, of the variables' shape (a constant expression is
        expanded to it). A shared subexpression is computed once.
    """
    memo: dict[Node, str] = {}
    render = _Renderer(names, graph, memo)
    out = render(node)
    if isinstance(node, Num):
        shape = graph.op("Shape", next(iter(names.values())))
        out = graph.op("Expand", out, shape)
    return out


class _Renderer:
    """One walk of a tree, with the memo that renders a repeated subtree once."""

    def __init__(self, names: Mapping[str, str], graph: OnnxGraph, memo: dict[Node, str]):
        self.names, self.g, self.memo = names, graph, memo

    def __call__(self, x: Node) -> str:
        out = self.memo.get(x)
        if out is None:
            out = self.memo[x] = self._render(x)
        return out

    def _render(self, x: Node) -> str:
        g = self.g
        if isinstance(x, Num):
            return g.const(x.value)
        if isinstance(x, Var):
            return self.names[x.name]
        if isinstance(x, Neg):
            return g.op("Neg", self(x.arg))
        if isinstance(x, BinOp):
            if x.op == "**" and x.right == Num(2.0):  # as the array-API evaluator: x * x
                base = self(x.left)
                return g.op("Mul", base, base)
            return g.op(_BINARY[x.op], self(x.left), self(x.right))
        if isinstance(x, Compare):
            if x.op == "!=":
                return g.op("Not", g.op("Equal", self(x.left), self(x.right)))
            return g.op(_COMPARE[x.op], self(x.left), self(x.right))
        args = [self(a) for a in x.args]
        if x.fn == "where":
            return g.op("Where", *args)
        if x.fn in ("maximum", "minimum"):
            return g.op("Max" if x.fn == "maximum" else "Min", *args)
        if x.fn == "log1p":
            return log1p(g, args[0])
        if x.fn == "expm1":
            return expm1(g, args[0])
        if x.fn == "erf":
            return g.op("Erf", args[0]) if g.dtype == np.float32 else erf(g, args[0])
        return g.op(_UNARY[x.fn], args[0])


def log1p(g: OnnxGraph, x: str) -> str:
    """``log1p(x)``, Goldberg's way: exact for a tiny ``x`` where ``log(1 + x)`` gives 0."""
    one = g.const(1.0)
    u = g.op("Add", one, x)
    ratio = g.op("Div", g.op("Log", u), g.op("Sub", u, one))  # NaN at u == 1: not selected
    out = g.op("Where", g.op("Equal", u, one), x, g.op("Mul", x, ratio))
    return g.op("Where", g.op("Equal", u, g.const(math.inf)), u, out)


def expm1(g: OnnxGraph, x: str) -> str:
    """``expm1(x)``, Kahan's way: exact near 0, where ``exp(x) - 1`` cancels."""
    one = g.const(1.0)
    u = g.op("Exp", x)
    um1 = g.op("Sub", u, one)
    # x / log(u) is near 1, so no finite x overflows the product (u - 1) * x / log(u) would
    general = g.op("Mul", um1, g.op("Div", x, g.op("Log", u)))
    out = g.op("Where", g.op("Equal", um1, g.const(-1.0)), um1, general)
    out = g.op("Where", g.op("Equal", u, one), x, out)
    return g.op("Where", g.op("Equal", u, g.const(math.inf)), u, out)


def _clenshaw(g: OnnxGraph, coeffs: tuple[float, ...], u: str) -> str:
    """``sum_j coeffs[j] T_j(u)`` by Clenshaw's recurrence (as the Numba helpers)."""
    u2 = g.op("Add", u, u)
    b_next, b_next2 = g.const(coeffs[-1]), g.const(0.0)
    for c in coeffs[-2:0:-1]:
        b = g.op("Add", g.op("Sub", g.op("Mul", u2, b_next), b_next2), g.const(c))
        b_next, b_next2 = b, b_next
    return g.op("Add", g.op("Sub", g.op("Mul", u, b_next), b_next2), g.const(coeffs[0]))


def erf(g: OnnxGraph, x: str) -> str:
    """``erf(x)`` from arithmetic: ``x h(x^2)`` below 1, ``1 - exp(-x^2) g(x)`` above."""
    dtype = g.dtype.name
    one, top = g.const(1.0), ERF_MAX[dtype]
    ax = g.op("Abs", x)
    w = g.op("Sub", g.op("Mul", g.const(2.0), g.op("Mul", x, x)), one)
    head = g.op("Mul", x, _clenshaw(g, ERF_HEAD[dtype], w))
    xc = g.op("Max", g.op("Min", ax, g.const(top)), one)
    t = g.op("Div", g.const(2.0), g.op("Add", g.const(2.0), xc))
    ta, tb = 2.0 / 3.0, 2.0 / (2.0 + top)  # t at x = 1 and x = top
    v = g.op("Sub", g.op("Mul", t, g.const(2.0 / (tb - ta))), g.const((ta + tb) / (tb - ta)))
    erfc = g.op(
        "Mul", g.op("Exp", g.op("Neg", g.op("Mul", xc, xc))), _clenshaw(g, ERF_TAIL[dtype], v)
    )
    tail = g.op("Mul", g.op("Sign", x), g.op("Sub", one, erfc))
    out = g.op("Where", g.op("Less", ax, one), head, tail)
    return g.op("Where", g.op("Equal", x, x), out, x)  # NaN stays NaN
