"""The optimizers with hand-written kernels: SGD (momentum, Nesterov) and Adam."""

from __future__ import annotations

import typing

from .._validation import check_real
from ._base import Optimizer, zeros_like

if typing.TYPE_CHECKING:
    from typing import Any

    from ..backends import Backend

    Array = Any

__all__ = ["SGD", "Adam"]


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
        momentum = check_real(momentum, "momentum", 0.0, 1.0, high_open=True)
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
            self.velocity = zeros_like(params, backend)
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
    nonnegative_state = ("v",)

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1 = check_real(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_real(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_real(eps, "eps", 0.0, low_open=True)
        self.m: list[Array] | None = None
        self.v: list[Array] | None = None

    def reset(self) -> None:
        """Forget all state (moments, velocities, step count)."""
        super().reset()
        self.m = self.v = None

    def step(self, params: list[Array], grads: list[Array], backend: Backend) -> list[Array]:
        """Apply one update; return the new parameter list."""
        if self.m is None or self.v is None:
            self.m = zeros_like(params, backend)
            self.v = zeros_like(params, backend)
        self.t += 1
        new_params, self.m, self.v = backend.adam_update(
            params, grads, self.m, self.v, self.t, self.lr, self.beta1, self.beta2, self.eps
        )
        return new_params

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
