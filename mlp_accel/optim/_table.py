"""The base of the optimizers whose update is a rule of the optimizer table.

Such an optimizer computes its host scalars once per step (in double precision) and hands
them, its state and the rule to the backend's ``optimizer_update`` hook: NumPy runs the
rule's array-API rendering, Numba and CUDA their kernels rendered from the same rule
(``mlp_accel.ops.optimizers``).
"""

from __future__ import annotations

import typing

from ..ops.optimizers import optimizer_row
from ._base import Optimizer

if typing.TYPE_CHECKING:
    from typing import Any

    from ..backends import Backend

    Array = Any

__all__ = ["TableOptimizer", "adam_scalars"]


def adam_scalars(lr: float, beta1: float, beta2: float, eps: float, step: int) -> tuple[float, ...]:
    """Adam's host scalars at ``step`` (from 1), in the table's order.

    ``lr, beta1, 1 - beta1, beta2, 1 - beta2, eps`` and the bias corrections
    ``1 - beta1**step``, ``1 - beta2**step``, as ``Backend.adam_update`` computes them.
    """
    return (
        lr,
        beta1,
        1.0 - beta1,
        beta2,
        1.0 - beta2,
        eps,
        1.0 - beta1**step,
        1.0 - beta2**step,
    )


class TableOptimizer(Optimizer):
    """An optimizer whose update is a rule of the optimizer table.

    The backend's ``optimizer_update`` hook runs the rule. Subclasses name their rule
    (:attr:`update_rule`) and compute the rule's scalars of a step (:meth:`_scalars`, after
    the step count is advanced) and of a tensor (:meth:`_tensor_scalars`; a 1-D tensor is a
    bias). A state list starts as zeros, or as :meth:`_initial_value`.
    """

    decay_biases: bool = False

    @property
    def update_rule(self) -> str:
        """The optimizer table's rule this optimizer's updates run."""
        raise NotImplementedError

    def _scalars(self) -> tuple[float, ...]:
        raise NotImplementedError

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        raise NotImplementedError

    def _initial_value(self, name: str) -> float:
        return 0.0

    def _decay(self, weight_decay: float, bias: bool) -> float:
        """The weight decay of a tensor: none for a bias unless ``decay_biases``."""
        return 0.0 if bias and not self.decay_biases else weight_decay

    def reset(self) -> None:
        """Forget all state (moments, velocities, step count)."""
        super().reset()
        for name in self.state_names:
            setattr(self, name, None)

    def step(self, params: list[Array], grads: list[Array], backend: Backend) -> list[Array]:
        """Apply one update; return the new parameter list."""
        row = optimizer_row(self.update_rule)
        xp = backend.xp
        for name in row.state:
            if getattr(self, name) is None:
                value = self._initial_value(name)
                start = [xp.zeros_like(p) if value == 0 else xp.full_like(p, value) for p in params]
                setattr(self, name, start)
        self.t += 1
        new_params, new_state = backend.optimizer_update(
            row,
            params,
            grads,
            [getattr(self, name) for name in row.state],
            self._scalars(),
            [self._tensor_scalars(len(p.shape) == 1) for p in params],
        )
        for name, arrays in zip(row.state, new_state):
            setattr(self, name, arrays)
        return new_params
