"""The math of the package, written once: expressions, the activation/loss table, layout.

Nothing here imports the rest of the package; every backend renders its kernels from
:mod:`.table` (see :mod:`.expr` for the expression language).
"""

from __future__ import annotations

from .layout import Slot, n_parameters, param_layout, param_name, param_shapes
from .table import (
    ACTIVATION_ROWS,
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    LOSS_ROWS,
    LOSSES,
    Activation,
    ActivationRow,
    Loss,
    LossRow,
    activation_row,
    custom_activations,
    get_activation,
    get_loss,
    is_builtin,
    loss_row,
    register_activation,
)

__all__ = [
    "ACTIVATION_ROWS",
    "ACTIVATIONS",
    "LEAKY_RELU_SLOPE",
    "LOSS_ROWS",
    "LOSSES",
    "Activation",
    "ActivationRow",
    "Loss",
    "LossRow",
    "Slot",
    "activation_row",
    "custom_activations",
    "get_activation",
    "get_loss",
    "is_builtin",
    "loss_row",
    "n_parameters",
    "param_layout",
    "param_name",
    "param_shapes",
    "register_activation",
]
