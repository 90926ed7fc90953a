"""Looking things up by name: the one policy every registry of the package follows.

Names are matched after ``strip().lower()`` (``" ReLU "`` is ``"relu"``); an unknown name is a
``ValueError`` that lists the valid names, sorted; a name that is not a string is a
``TypeError``. Activations, losses, optimizers, schedules, initializers and backends all look
names up here, so a user meets one behaviour everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

__all__ = ["canonical_name", "lookup"]

T = TypeVar("T")


def canonical_name(
    names: Collection[str], name: object, kind: str, plural: str | None = None
) -> str:
    """The entry of ``names`` that ``name`` means, after ``strip().lower()``.

    Parameters
    ----------
    names : collection of str
        The valid names, in lower case.
    name : object
        What the caller passed.
    kind : str
        What a name names, for the messages (``"optimizer"``).
    plural : str, optional
        The plural of ``kind`` where it is not ``kind + "s"``.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        ``name`` is none of ``names``; the message lists them, sorted.
    """
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in names:
        # "__"-prefixed entries are internal keys (a formula's own name), never listed.
        valid = ", ".join(sorted(n for n in names if not n.startswith("__")))
        raise ValueError(f"unknown {kind} {name!r}; valid {plural or kind + 's'}: {valid}")
    return key


def lookup(table: Mapping[str, T], name: object, kind: str, plural: str | None = None) -> T:
    """``table[name]`` under :func:`canonical_name`'s rules.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        Unknown name; the message lists the valid names, sorted.
    """
    return table[canonical_name(table, name, kind, plural)]
