"""Layer-wise adaptive optimizers of the table: LARS and LAMB, as optax defines them.

Each tensor's step is scaled by a trust ratio of two norms over that tensor, ``||p||`` and the
norm of its raw update: a first pass over the tensor updates the state and adds up both
squared norms in float64 (in a fixed order), a second applies the scaled step.
"""

from __future__ import annotations

import typing

from .._validation import check_real
from ._adaptive import _beta, _non_negative, _positive
from ._base import check_flag
from ._table import TableOptimizer, adam_scalars

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["LARS", "LAMB"]


class LARS(TableOptimizer):
    """LARS (You et al., 2017) as optax's ``lars``: momentum SGD scaled by a trust ratio.

    Per tensor, with ``u = g + weight_decay * p``::

        ratio = trust_coefficient * ||p|| / (||u|| + eps)   (1 where ||p|| or ||u|| is 0)
        velocity = momentum * velocity + lr * ratio * u
        p = p - velocity      (Nesterov: p - (lr * ratio * u + momentum * velocity))

    The learning rate is inside the velocity, as in the paper's algorithm and optax (PyTorch's
    SGD keeps it outside). Biases, as in the paper's experiments, are left out of the decay
    and of the ratio by default (their step is ``lr * g`` through the velocity): optax's
    ``weight_decay_mask`` and ``trust_ratio_mask`` false for them.

    Parameters
    ----------
    lr : float, default 1.0
        The global learning rate; the trust coefficient makes each tensor's relative step
        about ``lr * trust_coefficient``.
    momentum : float, default 0.9
        In ``[0, 1)``.
    weight_decay : float, default 0
        Added to the gradient before the ratio (coupled, as the paper's).
    trust_coefficient : float, default 0.001
        The paper's eta.
    eps : float, default 0
        Added to the update's norm in the ratio's denominator.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0``).
    decay_biases, adapt_biases : bool, default False
        Apply the weight decay, and the trust ratio, to the biases too (optax's defaults).

    Raises
    ------
    ValueError
        A learning rate or trust coefficient that is not positive and finite, a momentum
        outside ``[0, 1)``, a negative weight decay or ``eps``, or Nesterov without momentum.
    TypeError
        A flag that is not a bool.
    """

    name = "lars"
    state_names = ("velocity",)

    def __init__(
        self,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        nesterov: bool = False,
        decay_biases: bool = False,
        adapt_biases: bool = False,
    ) -> None:
        super().__init__(lr)
        self.momentum = _beta(momentum, "momentum")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.trust_coefficient = _positive(trust_coefficient, "trust_coefficient")
        self.eps = check_real(eps, "eps", 0.0)
        self.nesterov = check_flag(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.decay_biases = check_flag(decay_biases, "decay_biases")
        self.adapt_biases = check_flag(adapt_biases, "adapt_biases")
        self.reset()

    @property
    def update_rule(self) -> str:
        """The optimizer table's rule this optimizer's updates run."""
        return "lars_nesterov" if self.nesterov else "lars"

    def _scalars(self) -> tuple[float, ...]:
        return (self.lr, self.momentum, self.trust_coefficient, self.eps)

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        adapt = 0.0 if bias and not self.adapt_biases else 1.0
        return (self._decay(self.weight_decay, bias), adapt)

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments, JSON-serializable."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "eps": self.eps,
            "nesterov": self.nesterov,
            "decay_biases": self.decay_biases,
            "adapt_biases": self.adapt_biases,
        }


class LAMB(TableOptimizer):
    """LAMB (You et al., 2020) as optax's ``lamb``: decayed Adam scaled by a trust ratio.

    Per tensor::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p
        p = p - lr * ||p|| / ||u|| * u          (ratio 1 where ||p|| or ||u|| is 0)

    This is the paper's second version (bias-corrected moments, the ratio ``||p|| / ||u||``
    without clipping the weight norm), optax's default. Biases are left out of the decay by
    default (optax's ``mask``) but get the ratio, as in optax.

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the moment estimates, in ``[0, 1)``.
    eps : float, default 1e-6
        Added to the root of the second moment (optax's default).
    weight_decay : float, default 0
        Decoupled decay, added to the direction before the ratio.
    decay_biases : bool, default False
        Decay the biases too.

    Raises
    ------
    ValueError
        A learning rate or ``eps`` that is not positive and finite, a beta outside
        ``[0, 1)``, or a negative weight decay.
    TypeError
        ``decay_biases`` is not a bool.
    """

    name = "lamb"
    state_names = ("m", "v")
    nonnegative_state = ("v",)

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
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
        return "lamb"

    def _scalars(self) -> tuple[float, ...]:
        return adam_scalars(self.lr, self.beta1, self.beta2, self.eps, self.t)

    def _tensor_scalars(self, bias: bool) -> tuple[float, ...]:
        return (self._decay(self.weight_decay, bias),)

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
