"""Per-element adaptive optimizers of the table: AdamW, RMSprop, Adagrad (PyTorch's rules)."""

from __future__ import annotations

import typing

from .._validation import check_real
from ._base import check_flag
from ._table import TableOptimizer, adam_scalars

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["AdamW", "RMSprop", "Adagrad"]


def _beta(value: float, name: str) -> float:
    return check_real(value, name, 0.0, 1.0, high_open=True)


def _positive(value: float, name: str) -> float:
    return check_real(value, name, 0.0, low_open=True)


def _non_negative(value: float, name: str) -> float:
    return check_real(value, name, 0.0)


class AdamW(TableOptimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), in PyTorch's form.

    Each step first shrinks the parameters, then takes Adam's step::

        p = p * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    The decay is proportional to the (scheduled) learning rate, as PyTorch's, and does not
    pass through the moments, unlike the L2 penalty ``alpha`` of :func:`mlp_accel.fit`.
    With ``weight_decay=0`` it is :class:`Adam`, bit for bit on NumPy.

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the moment estimates, in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the root of the second moment.
    weight_decay : float, default 1e-2
        Decoupled decay rate (PyTorch's default).
    decay_biases : bool, default False
        Decay the biases too. PyTorch's AdamW decays every tensor it is given; here the
        weights only by default, as ``alpha`` penalizes them.

    Raises
    ------
    ValueError
        A learning rate or ``eps`` that is not positive and finite, a beta outside
        ``[0, 1)``, or a negative weight decay.
    TypeError
        ``decay_biases`` is not a bool.
    """

    name = "adamw"
    state_names = ("m", "v")
    nonnegative_state = ("v",)

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        decay_biases: bool = False,
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = _beta(beta1, "beta1"), _beta(beta2, "beta2")
        self.eps = _positive(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.decay_biases = check_flag(decay_biases, "decay_biases")
        self.reset()

    @property
    def update_rule(self) -> str:
        """The optimizer table's rule this optimizer's updates run."""
        return "adamw"

    def _scalars(self) -> tuple[float, ...]:
        return adam_scalars(self.lr, self.beta1, self.beta2, self.eps, self.t)

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        return (1.0 - self.lr * self._decay(self.weight_decay, bias),)

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
        }


class RMSprop(TableOptimizer):
    """RMSprop (Hinton, 2012), with optional momentum and centering, in PyTorch's form.

    With ``gw = g + weight_decay * p`` (an L2 term in the gradient, as PyTorch's)::

        square_avg = rho * square_avg + (1 - rho) * gw * gw
        grad_avg = rho * grad_avg + (1 - rho) * gw                 (centered)
        avg = sqrt(square_avg - grad_avg**2) + eps  (centered), else sqrt(square_avg) + eps
        momentum_buffer = momentum * momentum_buffer + gw / avg;  p = p - lr * momentum_buffer
        p = p - lr * gw / avg                                      (momentum 0)

    Parameters
    ----------
    lr : float, default 1e-2
    rho : float, default 0.99
        Decay rate of the averages, in ``[0, 1)`` (PyTorch's ``alpha``; renamed here beside
        the L2 penalty ``alpha`` of :func:`mlp_accel.fit`).
    eps : float, default 1e-8
        Added to the root of the average square.
    weight_decay : float, default 0
        L2 term added to the gradient (coupled: it passes through the averages).
    momentum : float, default 0
        Momentum factor in ``[0, 1)``; above 0 the step goes through a momentum buffer.
    centered : bool, default False
        Divide by an estimate of the gradient's standard deviation, not its root mean square.
    decay_biases : bool, default False
        Apply ``weight_decay`` to the biases too (PyTorch applies it to every tensor).

    Raises
    ------
    ValueError
        A learning rate or ``eps`` that is not positive and finite, ``rho`` or ``momentum``
        outside ``[0, 1)``, or a negative weight decay.
    TypeError
        ``centered`` or ``decay_biases`` is not a bool.
    """

    name = "rmsprop"
    state_names = ("square_avg", "grad_avg", "momentum_buffer")
    nonnegative_state = ("square_avg",)

    def __init__(
        self,
        lr: float = 1e-2,
        rho: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        decay_biases: bool = False,
    ) -> None:
        super().__init__(lr)
        self.rho = _beta(rho, "rho")
        self.eps = _positive(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.momentum = _beta(momentum, "momentum")
        self.centered = check_flag(centered, "centered")
        self.decay_biases = check_flag(decay_biases, "decay_biases")
        self.reset()

    @property
    def update_rule(self) -> str:
        """The optimizer table's rule this optimizer's updates run (one per variant)."""
        return "rmsprop" + "_centered" * self.centered + "_momentum" * (self.momentum > 0)

    def _scalars(self) -> tuple[float, ...]:
        mu = (self.momentum,) if self.momentum > 0 else ()
        return (self.lr, self.rho, 1.0 - self.rho, self.eps, *mu)

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        return (self._decay(self.weight_decay, bias),)

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {
            "lr": self.lr,
            "rho": self.rho,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
            "decay_biases": self.decay_biases,
        }


class Adagrad(TableOptimizer):
    """Adagrad (Duchi et al., 2011), in PyTorch's form.

    With ``gw = g + weight_decay * p``::

        sum = sum + gw * gw
        p = p - lr * gw / (sqrt(sum) + eps)

    Parameters
    ----------
    lr : float, default 1e-2
    eps : float, default 1e-10
        Added to the root of the sum.
    weight_decay : float, default 0
        L2 term added to the gradient (coupled, as PyTorch's).
    initial_accumulator_value : float, default 0
        The sum's starting value (TensorFlow starts at 0.1).
    decay_biases : bool, default False
        Apply ``weight_decay`` to the biases too (PyTorch applies it to every tensor).

    Raises
    ------
    ValueError
        A learning rate or ``eps`` that is not positive and finite, or a negative weight
        decay or initial accumulator value.
    TypeError
        ``decay_biases`` is not a bool.
    """

    name = "adagrad"
    state_names = ("sum",)
    nonnegative_state = ("sum",)

    def __init__(
        self,
        lr: float = 1e-2,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        decay_biases: bool = False,
    ) -> None:
        super().__init__(lr)
        self.eps = _positive(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.initial_accumulator_value = _non_negative(
            initial_accumulator_value, "initial_accumulator_value"
        )
        self.decay_biases = check_flag(decay_biases, "decay_biases")
        self.reset()

    @property
    def update_rule(self) -> str:
        """The optimizer table's rule this optimizer's updates run."""
        return "adagrad"

    def _scalars(self) -> tuple[float, ...]:
        return (self.lr, self.eps)

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        return (self._decay(self.weight_decay, bias),)

    def _initial_value(self, name: str) -> float:
        return self.initial_accumulator_value

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {
            "lr": self.lr,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "decay_biases": self.decay_biases,
        }
