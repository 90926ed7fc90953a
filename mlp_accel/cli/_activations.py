"""``--define-activation NAME=EXPR[:DERIVATIVE]``: activations written on the command line.

A definition becomes a row of the model's own table (``MLP(custom_activations=...)``), never a
registered name: the saved model carries the formula, so ``predict`` and ``ma.load`` in
another process need no option.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["add_define_option", "activation_table", "ACTIVATIONS_HELP"]

#: The help of ``--activations`` where ``--define-activation`` sits beside it.
ACTIVATIONS_HELP = (
    "per weight layer, e.g. relu,gelu,sigmoid: a built-in name or one of --define-activation"
)


def _definition(text: str) -> tuple[str, str, str | None]:
    """``(name, expr, derivative or None)`` of ``NAME=EXPR[:DERIVATIVE]``.

    The expression language has no ``=`` outside comparisons and no ``:`` at all, so the
    first ``=`` ends the name and a ``:`` can only start the derivative.
    """
    name, sep, formula = text.partition("=")
    expr, colon, derivative = formula.partition(":")
    if not sep or not name.strip() or not expr.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=EXPR or NAME=EXPR:DERIVATIVE, e.g. mish='z * tanh(log1p(exp(z)))', "
            f"got {text!r}"
        )
    if colon and (not derivative.strip() or ":" in derivative):
        raise argparse.ArgumentTypeError(
            f"expected one derivative after a single ':' in NAME=EXPR:DERIVATIVE, got {text!r}"
        )
    return name.strip(), expr.strip(), derivative.strip() if colon else None


def add_define_option(parser: Any) -> None:
    """Add the repeatable ``--define-activation NAME=EXPR[:DERIVATIVE]`` to ``parser``."""
    parser.add_argument(
        "--define-activation",
        type=_definition,
        action="append",
        default=[],
        metavar="NAME=EXPR[:DERIVATIVE]",
        help="define an activation for --activations, as an expression in z (repeatable): "
        "numbers, + - * / **, exp expm1 log log1p tanh erf sqrt abs, maximum, minimum, "
        "where(z > 0, a, b); e.g. mish='z * tanh(log1p(exp(z)))'. The derivative is derived "
        "unless given after ':'. The saved model keeps the formula",
    )


def activation_table(
    definitions: Sequence[tuple[str, str, str | None]],
) -> dict[str, dict[str, str | None]] | None:
    """The ``custom_activations`` table of ``--define-activation``'s definitions, each checked.

    Every definition is checked, used by ``--activations`` or not, so that a typo in one is
    reported now and not in a later run that uses it.

    Parameters
    ----------
    definitions : sequence of (name, expr, derivative or None)
        As the option parses them.

    Returns
    -------
    dict or None
        ``{name: {"expr": ..., "derivative": ...}}``, or None when nothing is defined.

    Raises
    ------
    ValueError
        For a malformed, reserved or built-in name, a name defined twice, or an expression
        (or derivative) outside the language or its limits; the message names the option.
    """
    from ..ops.custom import checked_name, custom_row

    table: dict[str, dict[str, str | None]] = {}
    for name, expr, derivative in definitions:
        try:
            key = checked_name(name)
            if key in table:
                raise ValueError(f"activation {key!r} is defined twice")
            custom_row(key, expr, derivative)
        except ValueError as exc:
            raise ValueError(f"--define-activation: {exc}") from None
        table[key] = {"expr": expr, "derivative": derivative}
    return table or None
