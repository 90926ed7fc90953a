"""The expression tree and its parser: :func:`parse` reads a string with :mod:`ast` and
accepts only the constructs of the language, refusing anything else with a ``ValueError``
that quotes the offending token (nothing is ever ``eval``ed)."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

__all__ = [
    "FUNCTIONS",
    "MAX_LENGTH",
    "Node",
    "Num",
    "Var",
    "Neg",
    "BinOp",
    "Call",
    "Compare",
    "parse",
    "negate",
]

#: Allowed functions and their argument counts.
FUNCTIONS: dict[str, int] = {
    "exp": 1,
    "expm1": 1,
    "log": 1,
    "log1p": 1,
    "tanh": 1,
    "erf": 1,
    "sqrt": 1,
    "abs": 1,
    "where": 3,
    "maximum": 2,
    "minimum": 2,
}

#: Longest accepted expression (characters): bounds parse time and recursion depth.
MAX_LENGTH = 2000

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


@dataclass(frozen=True)
class Num:
    """A number."""

    value: float


@dataclass(frozen=True)
class Var:
    """A variable (``z``; tables also use ``a`` = f(z) and the target ``y``)."""

    name: str


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    arg: Node


@dataclass(frozen=True)
class BinOp:
    """``left op right`` for op in ``+ - * / **``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    """``fn(args...)`` for fn in :data:`FUNCTIONS`."""

    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    """``left op right`` for a comparison; only the condition of ``where``."""

    op: str
    left: Node
    right: Node


Node = Num | Var | Neg | BinOp | Call | Compare


# -- parsing -------------------------------------------------------------------------------
def parse(text: str, names: tuple[str, ...] = ("z",)) -> Node:
    """Parse and check an expression.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"where(z > 0, z, 0.01 * z)"``.
    names : tuple of str
        The variable names it may use.

    Returns
    -------
    Node
        The expression tree.

    Raises
    ------
    TypeError
        If ``text`` is not a string.
    ValueError
        For a syntax error or any construct outside the allowed list; the message names
        the offending token.
    """
    if not isinstance(text, str):
        raise TypeError(f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ValueError("expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"expression {text!r} is not valid syntax: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"expression {text!r} is nested too deeply") from None
    try:
        return _convert(tree.body, text.strip(), names, in_where=False)
    except RecursionError:
        raise ValueError(f"expression {text!r} is nested too deeply") from None


def _refuse(node: ast.AST, source: str, what: str) -> ValueError:
    token = ast.get_source_segment(source, node) or type(node).__name__
    return ValueError(f"{what} {token!r} is not allowed in an expression")


def _convert(node: ast.AST, src: str, names: tuple[str, ...], in_where: bool) -> Node:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(node, src, "constant")
        if not math.isfinite(value):
            raise _refuse(node, src, "non-finite constant")
        return Num(float(value))
    if isinstance(node, ast.Name):
        if node.id in names:
            return Var(node.id)
        allowed = ", ".join(names)
        raise ValueError(f"name {node.id!r} is not allowed in an expression (only {allowed})")
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return negate(_convert(node.operand, src, names, False))
        if isinstance(node.op, ast.UAdd):
            return _convert(node.operand, src, names, False)
        raise _refuse(node, src, "operator in")
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _refuse(node, src, "operator in")
        return BinOp(
            op, _convert(node.left, src, names, False), _convert(node.right, src, names, False)
        )
    if isinstance(node, ast.Compare):
        if not in_where:
            raise _refuse(node, src, "comparison outside where(),")
        if len(node.ops) != 1:
            raise _refuse(node, src, "chained comparison")
        op = _CMPOPS.get(type(node.ops[0]))
        if op is None:
            raise _refuse(node, src, "comparison")
        return Compare(
            op,
            _convert(node.left, src, names, False),
            _convert(node.comparators[0], src, names, False),
        )
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _refuse(node.func, src, "call of")
        fn = node.func.id
        if fn not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise ValueError(
                f"function {fn!r} is not allowed in an expression (allowed: {allowed})"
            )
        if node.keywords:
            raise _refuse(node.keywords[0], src, "keyword argument")
        if len(node.args) != FUNCTIONS[fn] or any(isinstance(a, ast.Starred) for a in node.args):
            raise ValueError(f"{fn}() takes {FUNCTIONS[fn]} argument(s), got {len(node.args)}")
        args = tuple(
            _convert(a, src, names, in_where=(fn == "where" and i == 0))
            for i, a in enumerate(node.args)
        )
        if fn == "where" and not isinstance(args[0], Compare):
            raise _refuse(node.args[0], src, "where() condition that is not a comparison:")
        return Call(fn, args)
    if isinstance(node, ast.Attribute):
        raise ValueError(f"attribute access {'.' + node.attr!r} is not allowed in an expression")
    if isinstance(node, ast.Lambda):
        raise ValueError("'lambda' is not allowed in an expression")
    raise _refuse(node, src, "construct")


def negate(x: Node) -> Node:
    """``-x``, folding a number and a double negation."""
    if isinstance(x, Num):
        return Num(-x.value)
    if isinstance(x, Neg):
        return x.arg
    return Neg(x)
