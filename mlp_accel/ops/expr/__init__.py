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

from . import derivative, render, tree, xp
from .derivative import *  # noqa: F403
from .render import *  # noqa: F403
from .tree import *  # noqa: F403
from .xp import *  # noqa: F403

__all__ = [*tree.__all__, *derivative.__all__, *xp.__all__, *render.__all__]
