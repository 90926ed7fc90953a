"""Optimizers with explicit state: SGD, Adam, AdamW, RMSprop, Adagrad, LARS and LAMB.

An optimizer holds its hyperparameters and its state (velocity, moments, step count) and
applies an update through the backend's hooks, so a fast backend can update in place.
``state_dict``/``load_state_dict`` expose the state as NumPy arrays for checkpoints.

SGD and Adam have hand-written kernels. The others are rules of the optimizer table
(``mlp_accel.ops.optimizers``): each per-element update written once, from which NumPy's
array-API code, the Numba kernels and the CUDA kernels are rendered. Their update equations,
the variants, and how weight decay sits beside the L2 penalty ``alpha`` are in
``docs/optimizers.md``.

The modules: ``_base`` (:class:`Optimizer`), ``_classic`` (SGD, Adam), ``_table`` (the base
of the table's optimizers), ``_adaptive`` (AdamW, RMSprop, Adagrad), ``_layerwise`` (LARS,
LAMB).
"""

from __future__ import annotations

import typing

from .._names import lookup as _lookup
from ._adaptive import Adagrad, AdamW, RMSprop
from ._base import Optimizer
from ._classic import SGD, Adam
from ._layerwise import LAMB, LARS

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "LARS",
    "LAMB",
    "get_optimizer",
    "OPTIMIZERS",
]

#: Every optimizer, by the name :func:`get_optimizer`, ``ma.fit(optimizer=...)`` and
#: ``mlp-accel train --optimizer`` take.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, LARS, LAMB)
}

# Pickles and help() name the public path, not the private module that defines the class.
for _cls in (Optimizer, *OPTIMIZERS.values()):
    _cls.__module__ = __name__
del _cls


def get_optimizer(name: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer by name, with keyword hyperparameters.

    The names: ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``, ``"lars"``,
    ``"lamb"`` (:data:`OPTIMIZERS`).

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
