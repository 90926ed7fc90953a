"""The parameter layout ``[W1, b1, W2, b2, ...]`` of a network, derived once.

Models, files, validation, benchmarks and the fused kernels all address the parameters of a
network with layer widths ``(d0, d1, ..., dL)`` the same way: ``W_k`` of shape
``(d_{k-1}, d_k)`` then ``b_k`` of shape ``(d_k,)``, flattened row-major one after another.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Slot", "param_name", "param_layout", "param_shapes", "n_parameters"]


@dataclass(frozen=True)
class Slot:
    """One parameter array: its name, layer (from 1), shape and place in the flat vector."""

    name: str
    layer: int
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def end(self) -> int:
        """One past the last flat position."""
        return self.offset + self.size


def param_name(i: int) -> str:
    """The name of parameter ``i`` (from 0) of ``[W1, b1, W2, b2, ...]``: ``W1``, ``b1``, ...

    Model files store the arrays under these names and error messages use them.

    Raises
    ------
    TypeError
        ``i`` is not an integer.
    ValueError
        ``i`` is negative.
    """
    index = operator.index(i)
    if index < 0:
        raise ValueError(f"parameter index must be >= 0, got {i!r}")
    layer, is_bias = divmod(index, 2)
    return f"{'b' if is_bias else 'W'}{layer + 1}"


def param_layout(widths: Sequence[int]) -> list[Slot]:
    """Slots of ``[W1, b1, ..., WL, bL]`` for layer widths ``(d0, ..., dL)``."""
    slots: list[Slot] = []
    offset = 0
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        for shape in ((int(n_in), int(n_out)), (int(n_out),)):
            slot = Slot(param_name(len(slots)), k, shape, offset)
            slots.append(slot)
            offset = slot.end
    return slots


def param_shapes(widths: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of ``[W1, b1, ..., WL, bL]``."""
    return [slot.shape for slot in param_layout(widths)]


def n_parameters(widths: Sequence[int]) -> int:
    """Number of parameters of a network with these layer widths."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(widths[:-1], widths[1:]))
