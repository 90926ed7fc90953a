"""The optimizer base class: hyperparameters, explicit state, and its round trip to host data."""

from __future__ import annotations

import typing

import numpy as np

from .._validation import check_real

if typing.TYPE_CHECKING:
    from typing import Any

    from ..backends import Backend

    Array = Any

__all__ = ["Optimizer", "check_flag", "zeros_like"]


class Optimizer:
    """Base class: ``step(params, grads, backend) -> new params``."""

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        self.lr = check_real(lr, "learning rate lr", 0.0, low_open=True)
        self.t = 0

    def step(self, params: list[Array], grads: list[Array], backend: Backend) -> list[Array]:
        """Apply one update; return the new parameter list (possibly the same arrays)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state (moments, velocities, step count)."""
        self.t = 0

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serializable."""
        raise NotImplementedError

    #: Names of the per-parameter state lists (attributes holding device arrays or None).
    state_names: tuple[str, ...] = ()
    #: The state lists that can never hold a negative value (second moments, sums of squares):
    #: a checkpoint holding one is refused.
    nonnegative_state: tuple[str, ...] = ()

    @property
    def update_rule(self) -> str | None:
        """The optimizer table's rule this optimizer's updates run.

        ``None`` for SGD and Adam, whose kernels are written by hand; :func:`mlp_accel.fit`
        compiles the rule's kernels before the first step.
        """
        return None

    def state_dict(self, backend: Backend) -> dict[str, Any]:
        """The full state as host data: name, hyperparameters, step count and NumPy arrays."""
        arrays = {}
        for name in self.state_names:
            for i, a in enumerate(getattr(self, name) or ()):
                arrays[f"{name}{i}"] = backend.to_numpy(a).copy()
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters(),
            "t": self.t,
            "arrays": arrays,
        }

    def load_state_dict(self, state: dict[str, Any], backend: Backend) -> None:
        """Restore :meth:`state_dict` output onto ``backend`` (arrays keep their dtype).

        Raises
        ------
        ValueError
            If the state belongs to another kind of optimizer, or to one with other
            hyperparameters than this one's (the learning rate aside: a schedule or a new
            rate may change it): its arrays would be read by another rule.
        """
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state is for {state.get('name')!r}, not {self.name!r}")
        saved = {k: v for k, v in dict(state.get("hyperparameters") or {}).items() if k != "lr"}
        mine = {k: v for k, v in self.hyperparameters().items() if k != "lr"}
        if saved and saved != mine:
            differ = ", ".join(
                f"{k}={saved.get(k)!r} (here {mine.get(k)!r})"
                for k in sorted(set(saved) | set(mine))
                if saved.get(k) != mine.get(k)
            )
            raise ValueError(
                f"optimizer state is for a {self.name} with {differ}: give the same "
                "hyperparameters, or no optimizer to resume with the saved one"
            )
        self.reset()
        self.t = int(state["t"])
        arrays = state["arrays"]
        for name in self.state_names:
            keys = sorted(
                (k for k in arrays if k[len(name) :].isdigit() and k.startswith(name)),
                key=lambda k: int(k[len(name) :]),
            )
            if keys:
                # Copies: the state's arrays stay the caller's, updated in place by nobody.
                copies = [np.array(arrays[k]) for k in keys]
                setattr(self, name, [backend.asarray(a, str(a.dtype)) for a in copies])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def zeros_like(params: list[Array], backend: Backend) -> list[Array]:
    """Zeros shaped and typed like each parameter, on ``backend``."""
    return [backend.xp.zeros_like(p) for p in params]


def check_flag(value: Any, name: str) -> bool:
    """A boolean hyperparameter, refusing anything but ``True`` and ``False``.

    Raises
    ------
    TypeError
        ``value`` is not a bool (a string such as ``"no"`` would otherwise count as true).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
