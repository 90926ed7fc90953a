"""A small expression language for elementwise math, and its renderers.

An expression is a string such as ``"z * (1 + erf(z / sqrt(2))) / 2"``. :func:`parse` reads
it with :mod:`ast` and accepts only a fixed list of constructs (never ``eval``): numbers,
the allowed variable names, ``+ - * / **``, unary minus, the functions of :data:`FUNCTIONS`,
and comparisons as the first argument of ``where``. Anything else is refused with a
``ValueError`` that quotes the offending token.

The parsed tree is a handful of frozen dataclasses. From it come:

- :func:`evaluate`: the array-API value (``xp`` functions, the reference implementation);
- :func:`diff`: the symbolic derivative, lightly simplified;
- :func:`to_python`: a scalar Python expression for generated Numba code;
- :func:`to_cuda`: a CUDA C expression over the ``real`` type.

This module imports nothing from the package and nothing heavy.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNCTIONS",
    "Node",
    "Num",
    "Var",
    "Neg",
    "BinOp",
    "Call",
    "Compare",
    "parse",
    "diff",
    "evaluate",
    "to_python",
    "to_cuda",
    "names_in",
    "MAX_LENGTH",
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
            return _negate(_convert(node.operand, src, names, False))
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


# -- construction with light simplification --------------------------------------------------
def _negate(x: Node) -> Node:
    if isinstance(x, Num):
        return Num(-x.value)
    if isinstance(x, Neg):
        return x.arg
    return Neg(x)


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
        return _negate(b)
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
        return _negate(b)
    if _num(b, -1.0):
        return _negate(a)
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
        return _negate(diff(node.arg, var))
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
            outer = _mul(scale, Call("exp", (_negate(BinOp("**", u, Num(2.0))),)))
        elif fn == "sqrt":
            return _div(du, _mul(Num(2.0), node))
        elif fn == "abs":
            return _where(Compare(">=", u, Num(0.0)), du, _negate(du))
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


# -- the array-API reference -----------------------------------------------------------------
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


# -- renderers -------------------------------------------------------------------------------
def _int_power(x: Node) -> int | None:
    if isinstance(x, Num) and x.value == int(x.value) and 1 <= x.value <= 4:
        return int(x.value)
    return None


#: Python names of the functions in generated Numba code (helpers the generated module
#: defines; see ``mlp_accel/backends/_numba_math.py``).
PYTHON_FUNCTIONS = {
    "exp": "_exp",
    "expm1": "_expm1",
    "log": "_log",
    "log1p": "_log1p",
    "tanh": "_tanh",
    "erf": "_erf",
    "sqrt": "math.sqrt",
    "abs": "abs",
    "maximum": "_maximum",
    "minimum": "_minimum",
}


def to_python(
    node: Node,
    names: Mapping[str, str],
    const: Callable[[float], str],
    functions: Mapping[str, str] | None = None,
) -> str:
    """A scalar Python expression for generated Numba code.

    Parameters
    ----------
    node : Node
        The expression.
    names : mapping
        Variable name -> the Python expression that holds it.
    const : callable
        Number -> the name of a typed constant (so float32 code stays float32).
    functions : mapping, optional
        Function name -> the helper to call, over :data:`PYTHON_FUNCTIONS`: the vectorizable
        helpers the generated module defines (``_exp``, ``_log1p``, ``_tanh``, ``_erf``, ...;
        a libm call such as ``math.exp`` would keep the sample loop scalar), ``math.sqrt``,
        ``abs``, and ``_maximum``/``_minimum``, which propagate NaN. ``where`` is a
        conditional expression.
    """
    fns = {**PYTHON_FUNCTIONS, **(functions or {})}

    def r(x: Node) -> str:
        if isinstance(x, Num):
            return const(x.value)
        if isinstance(x, Var):
            return names[x.name]
        if isinstance(x, Neg):
            return f"(-{r(x.arg)})"
        if isinstance(x, (BinOp, Compare)):
            if isinstance(x, BinOp) and x.op == "**":
                n = _int_power(x.right)
                if n is not None:  # repeated product: no pow call, dtype kept
                    base = r(x.left)
                    return "(" + " * ".join([base] * n) + ")"
            return f"({r(x.left)} {x.op} {r(x.right)})"
        if x.fn == "where":
            c, a, b = (r(arg) for arg in x.args)
            return f"({a} if {c} else {b})"
        return f"{fns[x.fn]}({', '.join(r(a) for a in x.args)})"

    return r(node)


#: CUDA names of the functions (macros of the kernels' preamble, float or double).
_CUDA_FUNCTIONS = {
    "exp": "EXP",
    "expm1": "EXPM1",
    "log": "LOG",
    "log1p": "LOG1P",
    "tanh": "TANH",
    "erf": "ERF",
    "sqrt": "SQRT",
    "abs": "FABS",
    "maximum": "nan_max",
    "minimum": "nan_min",
}


def to_cuda(node: Node, names: Mapping[str, str]) -> str:
    """A CUDA C expression over ``real`` (the kernels' preamble defines the macros)."""

    def r(x: Node) -> str:
        if isinstance(x, Num):
            return f"(real){x.value!r}"
        if isinstance(x, Var):
            return names[x.name]
        if isinstance(x, Neg):
            return f"(-{r(x.arg)})"
        if isinstance(x, (BinOp, Compare)):
            if isinstance(x, BinOp) and x.op == "**":
                n = _int_power(x.right)
                if n is not None:
                    base = r(x.left)
                    return "(" + " * ".join([base] * n) + ")"
                return f"POW({r(x.left)}, {r(x.right)})"
            return f"({r(x.left)} {x.op} {r(x.right)})"
        if x.fn == "where":
            c, a, b = (r(arg) for arg in x.args)
            return f"({c} ? {a} : {b})"
        return f"{_CUDA_FUNCTIONS[x.fn]}({', '.join(r(a) for a in x.args)})"

    return r(node)
