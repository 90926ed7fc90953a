"""Optimizers with explicit state, from simple to complex: SGD (momentum, Nesterov), Adam.

An optimizer holds its hyperparameters and its state (velocity, moments, step count) and
applies an update through the backend's hooks, so a fast backend can update in place.
``state_dict``/``load_state_dict`` expose the state as NumPy arrays for checkpoints.
"""

from __future__ import annotations

import typing

from ._names import lookup as _lookup
from ._validation import check_real as _check_real

if typing.TYPE_CHECKING:
    from typing import Any

    from .backends import Backend

    Array = Any

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer", "OPTIMIZERS"]


class Optimizer:
    """Base class: ``step(params, grads, backend) -> new params``."""

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        self.lr = _check_real(lr, "learning rate lr", 0.0, low_open=True)
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
            If the state belongs to another kind of optimizer.
        """
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state is for {state.get('name')!r}, not {self.name!r}")
        self.reset()
        self.t = int(state["t"])
        arrays = state["arrays"]
        for name in self.state_names:
            keys = sorted(
                (k for k in arrays if k[len(name) :].isdigit() and k.startswith(name)),
                key=lambda k: int(k[len(name) :]),
            )
            if keys:
                setattr(
                    self, name, [backend.asarray(arrays[k], str(arrays[k].dtype)) for k in keys]
                )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _zeros_like(params: list[Array], backend: Backend) -> list[Array]:
    return [backend.xp.zeros_like(p) for p in params]


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Parameters
    ----------
    lr : float
        Learning rate.
    momentum : float, default 0
        Momentum factor in ``[0, 1)``.
    nesterov : bool, default False
        Use Nesterov momentum (needs ``momentum > 0``).

    Raises
    ------
    ValueError
        A learning rate that is not positive and finite, or a momentum outside ``[0, 1)``.
    """

    name = "sgd"
    state_names = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        momentum = _check_real(momentum, "momentum", 0.0, 1.0, high_open=True)
        if nesterov and momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.velocity: list[Array] | None = None

    def reset(self) -> None:
        """Forget all state (moments, velocities, step count)."""
        super().reset()
        self.velocity = None

    def step(self, params: list[Array], grads: list[Array], backend: Backend) -> list[Array]:
        """Apply one update; return the new parameter list."""
        if self.momentum and self.velocity is None:
            self.velocity = _zeros_like(params, backend)
        self.t += 1
        new_params, self.velocity = backend.sgd_update(
            params, grads, self.velocity, self.lr, self.momentum, self.nesterov
        )
        return new_params

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), in PyTorch's form.

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the first and second moment estimates, in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the root of the second moment.

    Raises
    ------
    ValueError
        A learning rate or ``eps`` that is not positive and finite, or a beta outside
        ``[0, 1)``.
    """

    name = "adam"
    state_names = ("m", "v")

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1 = _check_real(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = _check_real(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = _check_real(eps, "eps", 0.0, low_open=True)
        self.m: list[Array] | None = None
        self.v: list[Array] | None = None

    def reset(self) -> None:
        """Forget all state (moments, velocities, step count)."""
        super().reset()
        self.m = self.v = None

    def step(self, params: list[Array], grads: list[Array], backend: Backend) -> list[Array]:
        """Apply one update; return the new parameter list."""
        if self.m is None or self.v is None:
            self.m = _zeros_like(params, backend)
            self.v = _zeros_like(params, backend)
        self.t += 1
        new_params, self.m, self.v = backend.adam_update(
            params, grads, self.m, self.v, self.t, self.lr, self.beta1, self.beta2, self.eps
        )
        return new_params

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def get_optimizer(name: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer by name (``"sgd"``, ``"adam"``) with keyword hyperparameters.

    Raises
    ------
    TypeError
        ``name`` is neither a string nor an :class:`Optimizer`.
    ValueError
        Unknown name; the message lists the valid names.
    """
    if isinstance(name, Optimizer):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"optimizer must be a name ({', '.join(sorted(OPTIMIZERS))}) or an "
            f"mlp_accel.optim.Optimizer, got {type(name).__name__}"
        )
    cls = _lookup(OPTIMIZERS, name, "optimizer")
    return cls(**kwargs)


# The namespace holds __all__ and modules only: the __future__ import binds a name too.
del annotations
