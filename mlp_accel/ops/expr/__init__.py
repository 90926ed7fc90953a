"""A small expression language for elementwise math, and its renderers.

An expression is a string such as ``"z * (1 + erf(z / sqrt(2))) / 2"``. :func:`parse` reads
it with :mod:`ast` and accepts only a fixed list of constructs (never ``eval``): numbers,
the allowed variable names, ``+ - * / **``, unary minus, the functions of :data:`FUNCTIONS`,
and comparisons as the first argument of ``where``. Anything else is refused with a
``ValueError`` that quotes the offending token.

The parsed tree is a handful of frozen dataclasses. From it come:

- :func:`evaluate` / :func:`compile_xp`: the array-API value (``xp`` functions, the
  reference implementation);
- :func:`diff`: the symbolic derivative, lightly simplified;
- :func:`to_python`: a scalar Python expression for generated Numba code;
- :func:`to_cuda`: a CUDA C expression over the ``real`` type.

One module per job: :mod:`.tree` (the nodes, parsing and checking), :mod:`.derivative`
(differentiation and simplification), :mod:`.xp` (array-API evaluation), :mod:`.render`
(the Numba and CUDA renderers). This package imports nothing from the rest of mlp_accel and
nothing heavy.
"""

from __future__ import annotations

from .derivative import diff, names_in
from .render import PYTHON_FUNCTIONS, to_cuda, to_python
from .tree import FUNCTIONS, MAX_LENGTH, BinOp, Call, Compare, Neg, Node, Num, Var, parse
from .xp import compile_xp, evaluate

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
    "compile_xp",
    "to_python",
    "to_cuda",
    "PYTHON_FUNCTIONS",
    "names_in",
    "MAX_LENGTH",
]
