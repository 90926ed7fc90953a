"""Renderers of an expression tree: a scalar Python expression for generated Numba code
(:func:`to_python`, calling the vectorizable helpers every generated module defines) and a
CUDA C expression (:func:`to_cuda`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .tree import BinOp, Compare, Neg, Node, Num, Var

__all__ = ["MAX_RENDERED", "PYTHON_FUNCTIONS", "check_renderable", "to_python", "to_cuda"]

#: Longest accepted rendering of one expression or derivative (characters, either dialect).
MAX_RENDERED = 20_000


def _int_power(x: Node) -> int | None:
    if isinstance(x, Num) and x.value == int(x.value) and 1 <= x.value <= 4:
        return int(x.value)
    return None


#: Python names of the functions in generated Numba code (helpers the generated module
#: defines; see ``mlp_accel/backends/numba/vecmath.py``).
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
    return _render(node, names, const, fns, lambda c, a, b: f"({a} if {c} else {b})")


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
    return _render(
        node,
        names,
        lambda value: f"(real){value!r}",
        _CUDA_FUNCTIONS,
        lambda c, a, b: f"({c} ? {a} : {b})",
        power=lambda base, exponent: f"POW({base}, {exponent})",
    )


def _render(
    node: Node,
    names: Mapping[str, str],
    num: Callable[[float], str],
    functions: Mapping[str, str],
    where: Callable[[str, str, str], str],
    power: Callable[[str, str], str] | None = None,
) -> str:
    """The one walk of both dialects; they differ in numbers, functions, ``where`` and a
    non-integer power (Python's ``**`` unless ``power`` is given)."""

    def int_power(base: str, n: int) -> str:
        if n == 1:
            return base
        return f"({base} ** {n})" if power is None else power(base, num(float(n)))

    def r(x: Node) -> str:
        if isinstance(x, Num):
            return num(x.value)
        if isinstance(x, Var):
            return names[x.name]
        if isinstance(x, Neg):
            return f"(-{r(x.arg)})"
        if isinstance(x, (BinOp, Compare)):
            if isinstance(x, BinOp) and x.op == "**":
                n = _int_power(x.right)
                if n is not None and isinstance(x.left, (Var, Num)):
                    # repeated product: no pow call, dtype kept
                    return "(" + " * ".join([r(x.left)] * n) + ")"
                if n is not None:
                    # A compound base is written once, so nested powers render in linear
                    # size: Numba computes ``x ** 3`` (a literal int) by multiplication,
                    # in x's dtype; CUDA calls pow.
                    return int_power(r(x.left), n)
                if power is not None:
                    return power(r(x.left), r(x.right))
            return f"({r(x.left)} {x.op} {r(x.right)})"
        if x.fn == "where":
            c, a, b = (r(arg) for arg in x.args)
            return where(c, a, b)
        return f"{functions[x.fn]}({', '.join(r(a) for a in x.args)})"

    return r(node)


def check_renderable(node: Node, what: str) -> None:
    """Refuse an expression whose rendering the kernels could not hold.

    Raises
    ------
    ValueError
        The Numba or CUDA rendering is longer than :data:`MAX_RENDERED` characters, is not
        valid Python (nested too deeply for the compiler), or a number in it (a derivative's
        constant) is not finite. ``what`` names the expression in the message.
    """
    try:
        numbers = _numbers(node)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"{what} has a constant that is not finite")
        names = {"z": "z", "a": "a", "y": "y"}
        python = to_python(node, names, lambda value: "_K")
        cuda = to_cuda(node, names)
        if max(len(python), len(cuda)) > MAX_RENDERED:
            raise ValueError(f"{what} renders to more than {MAX_RENDERED} characters")
        compile(python, "<expression>", "eval")
    except (RecursionError, MemoryError, SyntaxError):
        raise ValueError(f"{what} is nested too deeply to be compiled") from None


def _numbers(node: Node) -> list[float]:
    if isinstance(node, Num):
        return [node.value]
    if isinstance(node, Var):
        return []
    if isinstance(node, Neg):
        return _numbers(node.arg)
    if isinstance(node, (BinOp, Compare)):
        return _numbers(node.left) + _numbers(node.right)
    return [v for arg in node.args for v in _numbers(arg)]
