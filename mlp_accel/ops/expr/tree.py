"""The expression tree and its parser: :func:`parse` reads a string with :mod:`ast` and
accepts only the constructs of the language, refusing anything else with a ``ValueError``
that quotes the offending token (nothing is ever ``eval``ed).

Limits: at most :data:`MAX_LENGTH` characters, :data:`MAX_NODES` syntax nodes and
:data:`MAX_DEPTH` levels of nesting, so that parsing, differentiating and rendering stay
small and never recurse deeply.

Constants: every part of an expression without a variable (``2 ** 0.5``, ``exp(1)``) is
folded into one number when parsed, computed once in float64 with IEEE semantics, so every
backend uses the same value. A constant (literal or folded) that is NaN, infinite, complex
or outside float32's finite range (about 3.4e38) is refused with a ``ValueError``: it would
otherwise differ between dtypes and backends.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FUNCTIONS",
    "MAX_LENGTH",
    "MAX_NODES",
    "MAX_DEPTH",
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

#: Longest accepted expression (characters): bounds parse time.
MAX_LENGTH = 2000
#: Most syntax nodes in an expression (names, numbers, operators, calls).
MAX_NODES = 400
#: Deepest nesting of an expression's syntax tree (``z + z + z`` is 3 deep).
MAX_DEPTH = 32
#: Largest magnitude of a constant: float32's largest finite value.
_MAX_CONSTANT = float(np.finfo(np.float32).max)

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
    _check_size(tree.body, text)
    return _convert(tree.body, text.strip(), names, in_where=False)


def _check_size(root: ast.AST, text: str) -> None:
    """Refuse a tree beyond :data:`MAX_NODES` or :data:`MAX_DEPTH`, walking it without
    recursion (the later passes recurse, so depth is checked first)."""
    stack, nodes = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop)):
            continue
        nodes += 1
        if depth > MAX_DEPTH:
            raise ValueError(
                f"expression {_short(text)} is nested more than {MAX_DEPTH} levels deep"
            )
        if nodes > MAX_NODES:
            raise ValueError(f"expression {_short(text)} has more than {MAX_NODES} nodes")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _refuse(node: ast.AST, source: str, what: str) -> ValueError:
    token = ast.get_source_segment(source, node) or type(node).__name__
    return ValueError(f"{what} {token!r} is not allowed in an expression")


def _convert(node: ast.AST, src: str, names: tuple[str, ...], in_where: bool) -> Node:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(node, src, "constant")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        return _checked_constant(number, node, src)
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
        left, right = (_convert(x, src, names, False) for x in (node.left, node.right))
        return _fold(BinOp(op, left, right), node, src)
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
        return _fold(Call(fn, args), node, src)
    if isinstance(node, ast.Attribute):
        raise ValueError(f"attribute access {'.' + node.attr!r} is not allowed in an expression")
    if isinstance(node, ast.Lambda):
        raise ValueError("'lambda' is not allowed in an expression")
    raise _refuse(node, src, "construct")


def _checked_constant(value: float, node: ast.AST, src: str) -> Num:
    if not (math.isfinite(value) and abs(value) <= _MAX_CONSTANT):
        what = "NaN" if math.isnan(value) else "infinite" if math.isinf(value) else None
        what = what or "outside float32's finite range"
        token = ast.get_source_segment(src, node) or type(node).__name__
        token = token if len(token) <= 40 else token[:37] + "..."
        raise ValueError(
            f"constant {token!r} of the expression is {what}: a non-finite or out-of-range "
            "constant would differ between dtypes and backends"
        )
    return Num(value)


def _fold(x: BinOp | Call, node: ast.AST, src: str) -> Node:
    """``x`` as one number where its operands are numbers (computed once, in float64)."""
    args = (x.left, x.right) if isinstance(x, BinOp) else x.args
    if isinstance(x, Call) and x.fn == "where":
        cond, a, b = args
        if isinstance(cond.left, Num) and isinstance(cond.right, Num):
            return a if _evaluate_constant(cond) else b
        return x
    if not all(isinstance(a, Num) for a in args):
        return x
    return _checked_constant(_evaluate_constant(x), node, src)


def _evaluate_constant(x: Node) -> float:
    """The value of a tree of numbers in float64 under IEEE rules (errors give NaN/inf)."""
    if isinstance(x, Num):
        return x.value
    with np.errstate(all="ignore"):
        if isinstance(x, Compare):
            cmp = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
            cmp.update({"==": np.equal, "!=": np.not_equal})
            return float(cmp[x.op](_evaluate_constant(x.left), _evaluate_constant(x.right)))
        if isinstance(x, BinOp):
            a, b = np.float64(_evaluate_constant(x.left)), np.float64(_evaluate_constant(x.right))
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
            return float(ops[x.op](a, b) if x.op in ops else np.power(a, b))
        values = [np.float64(_evaluate_constant(a)) for a in x.args]
        if x.fn == "erf":
            return math.erf(float(values[0])) if not math.isnan(values[0]) else math.nan
        fn = {"abs": np.abs}.get(x.fn) or getattr(np, x.fn)
        return float(fn(*values))


def negate(x: Node) -> Node:
    """``-x``, folding a number and a double negation."""
    if isinstance(x, Num):
        return Num(-x.value)
    if isinstance(x, Neg):
        return x.arg
    return Neg(x)
