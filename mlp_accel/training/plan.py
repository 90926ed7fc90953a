"""The code path of a fit, fixed before its first step from the job alone.

:func:`plan_fit` settles ``backend="auto"`` (once per model), asks the backend which kernel
tier the job runs (:meth:`~mlp_accel.backends.Backend.choose_tier`: a pure function of the
network, rows, epochs and batch size, never of timings or of what a cache holds), compiles
what that tier needs (saying so where a compile, not a cache load, is needed) and records
the choice on the model (``model.code_path``) and so on the fit's history. Nothing swaps
the path during the fit: a fit's bits depend on its inputs alone.
"""

from __future__ import annotations

from typing import Any

from ..backends._auto import Job
from ..model import MLP

__all__ = ["plan_fit", "update_rule"]


def plan_fit(
    model: MLP,
    rows: int | None,
    epochs: int,
    batch_size: int | None,
    stream: Any = None,
    evaluate: bool = True,
    optimizer: str | None = None,
) -> dict[str, str]:
    """Fix ``model``'s backend and kernel tier for a fit of ``rows`` x ``epochs``.

    Parameters
    ----------
    model : MLP
    rows : int or None
        Training rows (``None``: unknown, a stream of batches).
    epochs : int
    batch_size : int or None
        Rows per step (``None``: the full batch).
    stream : file-like or False, optional
        Where a compile says so (standard error by default; ``False``: silent).
    evaluate : bool, default True
        Whether the fit computes losses outside its steps (validation data): their kernels
        are compiled too.
    optimizer : str, optional
        The optimizer table's rule the fit's updates run
        (:attr:`mlp_accel.optim.Optimizer.update_rule`; ``None``: SGD or Adam): its kernels
        are compiled, not the others'.

    Returns
    -------
    dict
        ``backend``, ``tier`` and ``reason``; also kept as ``model.code_path``.
    """
    model.settle_backend(rows, epochs, batch_size)
    job = Job(tuple(model.layers), model.dtype, rows, epochs, batch_size)
    tier, why = model.backend.choose_tier(model.spec, job)
    model.backend.prepare(model.spec, tier, stream, evaluate, optimizer)
    if tier != model.tier:
        model.tier = tier
    choice = model.backend_choice
    reason = why if choice is None else f"{choice.reason}; {why}"
    model.code_path = {"backend": model.backend.name, "tier": tier, "reason": reason}
    return model.code_path


def update_rule(optimizer: Any, checkpoint: dict[str, Any] | None = None) -> str | None:
    """The optimizer table's rule a fit's updates run, for :func:`plan_fit`: the given
    optimizer's, else the checkpoint's (a resume rebuilds that optimizer), else the default
    Adam's (``None``)."""
    from ..optim import get_optimizer

    if optimizer is None and checkpoint is not None:
        saved = checkpoint["optimizer"]
        optimizer = get_optimizer(saved["name"], **saved["hyperparameters"])
    return None if optimizer is None else optimizer.update_rule
