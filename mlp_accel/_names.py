"""Looking things up by name, with errors that list the valid names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["lookup"]

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: object, kind: str, plural: str | None = None) -> T:
    """``table[name]``, or a ``ValueError`` naming the valid keys (``TypeError`` for a
    non-string name)."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, got {type(name).__name__}")
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise ValueError(
            f"unknown {kind} {name!r}; valid {plural or kind + 's'}: {valid}"
        ) from None
