"""The NumPy backend's ``optimizer_update``: the optimizer table's rules evaluated in place.

The same expression trees as the array-API reference (:func:`mlp_accel.ops.optimizers.
xp_update`), operation for operation and so bit for bit, but with NumPy's ``out=``: each
assignment's last operation writes straight into its state array (or the parameter), and
the operations inside it into a few scratch buffers. The reference allocates a new array per
operation, which for a memory-bound update is most of its time.

A rule is compiled once into a :class:`_Program`: a list of ``(ufunc, operand slots, output
slot)`` per phase over one slot layout (the arrays, the scalars, the locals, the scratch
buffers, chosen when compiling), so a step costs the ufunc calls and little else.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops import expr as E
from ..ops.optimizers import OptimizerRow, step_scalars

__all__ = ["inplace_update"]

_BINARY: dict[str, Callable[..., Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "**": np.power,
}
_UNARY: dict[str, Callable[..., Any]] = {
    "sqrt": np.sqrt,
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "abs": np.abs,
}

#: One operation: ``fn(*slots[args], out=slots[out])``; with no ``args``, ``fn(env, out=...)``
#: (the reference's evaluation of a node that has no ufunc here).
Step = tuple[Callable[..., Any], tuple[int, ...], int]


def _copy(src: Any, out: Any) -> None:
    np.copyto(out, src)


class _Program:
    """A rule's operations over numbered slots: ``update``, and for a layer-wise rule
    ``direction`` (into ``u``) and ``apply``. Built once per rule, never changed after."""

    def __init__(self, row: OptimizerRow) -> None:
        self.count = 0
        self.slot: dict[str, int] = {}
        for name in ("p", "g", *row.state, *row.scalars, *row.tensor_scalars, "s"):
            self.slot[name] = self._allocate()
        self.constants: dict[int, float] = {}
        self.buffers: list[int] = []  # slots that get an empty array per tensor
        self.scratch: set[int] = set()  # the buffers that hold intermediate results
        self.free: list[int] = []  # scratch slots not holding a live value
        self.update = self._assignments(row.update_trees)
        self.direction: list[Step] = []
        self.apply: list[Step] = []
        if row.direction_tree is not None:
            self.direction = self._assignments((("u", row.direction_tree),))
            self.apply = self._assignments(row.apply_trees)

    def _allocate(self) -> int:
        self.count += 1
        return self.count - 1

    def _buffer(self) -> int:
        slot = self._allocate()
        self.buffers.append(slot)
        return slot

    def _scratch_slot(self) -> int:
        if self.free:
            return self.free.pop()
        slot = self._buffer()
        self.scratch.add(slot)
        return slot

    def _operand(self, node: E.Node, steps: list[Step]) -> int:
        if isinstance(node, E.Num):
            slot = self._allocate()
            self.constants[slot] = node.value
            return slot
        if isinstance(node, E.Var):
            return self.slot[node.name]
        return self._emit(node, None, steps)

    def _emit(self, node: E.Node, out: int | None, steps: list[Step]) -> int:
        """Steps computing ``node`` into ``out`` (or a scratch slot); returns that slot."""
        args: tuple[int, ...]
        if isinstance(node, E.BinOp) and node.op == "**" and node.right == E.Num(2.0):
            a = self._operand(node.left, steps)  # x ** 2 as x * x, as the reference does
            args, fn = (a, a), np.multiply
        elif isinstance(node, E.BinOp):
            a = self._operand(node.left, steps)
            args, fn = (a, self._operand(node.right, steps)), _BINARY[node.op]
        elif isinstance(node, E.Neg):
            args, fn = (self._operand(node.arg, steps),), np.negative
        elif isinstance(node, E.Call) and node.fn in _UNARY:
            args, fn = (self._operand(node.args[0], steps),), _UNARY[node.fn]
        elif isinstance(node, (E.Num, E.Var)):
            args, fn = (self._operand(node, steps),), _copy
        else:  # where, maximum, erf: the reference's evaluation, copied into place
            args, fn = (), functools.partial(_reference, E.compile_xp(node))
        if out is None:
            reusable = [s for s in args if s in self.scratch]
            out = reusable[0] if reusable else self._scratch_slot()
        steps.append((fn, args, out))
        self.free += [s for s in set(args) if s in self.scratch and s != out]
        return out

    def _assignments(self, trees: tuple[tuple[str, E.Node], ...]) -> list[Step]:
        steps: list[Step] = []
        for target, tree in trees:
            if target not in self.slot:  # a local: its own buffer, to the end of the step
                self.slot[target] = self._buffer()
            self._emit(tree, self.slot[target], steps)
        return steps

    def slots(self, arrays: dict[str, Any], like: np.ndarray, k: int) -> list[Any]:
        """Tensor ``k``'s slots: its arrays and scalars, the constants, and buffers shaped
        like it (kept from the previous step of this thread where they fit)."""
        values: list[Any] = [None] * self.count
        for name, value in arrays.items():
            values[self.slot[name]] = value
        for slot, number in self.constants.items():
            values[slot] = number
        kept = _kept_buffers(self)
        for slot in self.buffers:
            buffer = kept.get((k, slot))
            if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
                buffer = kept[(k, slot)] = np.empty_like(like)
            values[slot] = buffer
        return values

    def run(self, steps: list[Step], values: list[Any]) -> None:
        """Run ``steps`` over one tensor's ``values``."""
        for fn, args, out in steps:
            if args:
                fn(*[values[i] for i in args], out=values[out])
            else:
                fn({name: values[slot] for name, slot in self.slot.items()}, out=values[out])


def _reference(run: Callable[..., Any], env: dict[str, Any], *, out: Any) -> None:
    np.copyto(out, run(env, np))


@functools.cache
def _program(row: OptimizerRow) -> _Program:
    return _Program(row)


# Scratch buffers kept between steps, per thread and rule: a fresh buffer costs a page fault
# per 4 KiB page at its first write, several times the update's own time here (a 256 KiB
# buffer: about 280 us against 15 us for the operation). At most the rule's buffer count
# times the parameters of the last network the thread updated with it.
_kept = threading.local()


def _kept_buffers(program: _Program) -> dict[tuple[int, int], np.ndarray]:
    table = getattr(_kept, "buffers", None)
    if table is None:
        table = _kept.buffers = {}
    return table.setdefault(id(program), {})


def inplace_update(
    row: OptimizerRow,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    state: list[list[np.ndarray]],
    scalars: tuple[float, ...],
    tensor_scalars: list[tuple[float, ...]],
) -> None:
    """Run ``row`` over NumPy arrays, updating ``params`` and ``state`` in place."""
    program = _program(row)
    host = dict(zip(row.scalars, scalars))
    tensors = []
    for k, (p, g) in enumerate(zip(params, grads)):
        arrays = {"p": p, "g": g, **{name: lst[k] for name, lst in zip(row.state, state)}}
        arrays.update(host)
        arrays.update(zip(row.tensor_scalars, tensor_scalars[k]))
        values = program.slots(arrays, p, k)
        program.run(program.update, values)
        tensors.append(values)
    if not row.layerwise:
        return
    sums = []
    p_slot, u_slot, s_slot = program.slot["p"], program.slot["u"], program.slot["s"]
    for values in tensors:
        program.run(program.direction, values)
        p, u = values[p_slot], values[u_slot]
        sums.append(
            (float(np.sum(p * p, dtype=np.float64)), float(np.sum(u * u, dtype=np.float64)))
        )
    for values, s in zip(tensors, step_scalars(row, scalars, tensor_scalars, sums)):
        values[s_slot] = s
        program.run(program.apply, values)
