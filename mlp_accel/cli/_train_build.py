"""Model and optimizer construction for ``mlp-accel train``, from the parsed arguments."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._activations import activation_table
from ._train_data import TrainingData


def build_model(args: argparse.Namespace, data: TrainingData) -> Any:
    """The ``MLP`` that --layers, --activations, --loss, ... describe for this data.

    It carries the data's preprocessing, so that it trains on raw rows and labels, and its
    checkpoints and saved file take them too, as do the formulas of --define-activation. A
    network that cannot fit in this machine's memory is refused before it is allocated.
    """
    import mlp_accel as ma

    layers = args.layers or _default_layers(data.n_features, data.n_out)
    _check_ends(layers, data)
    _check_model_size(layers, args.dtype, args.batch_size or data.X_train.shape[0])
    loss = args.loss or {"binary": "binary_cross_entropy", "multiclass": "cross_entropy"}.get(
        data.task, "squared_error"
    )
    return ma.MLP(
        layers,
        args.activations,
        loss,
        backend=args.backend,
        dtype=args.dtype,
        seed=args.seed,
        init=args.init,
        preprocessing=data.preprocessing,
        custom_activations=activation_table(args.define_activation),
    )


def _check_ends(layers: Sequence[int], data: TrainingData) -> None:
    """Refuse --layers whose first or last width does not fit the data, in the option's terms
    (the model's preprocessing would otherwise be the first to notice, in its own)."""
    spec = ",".join(map(str, layers))
    if len(layers) < 2:
        return  # the model names a network without layers itself
    if layers[0] != data.n_features:
        raise ValueError(
            f"--layers {spec} has {layers[0]} input unit(s), but the data has "
            f"{data.n_features} features"
        )
    if layers[-1] != data.n_out:
        raise ValueError(
            f"--layers {spec} has {layers[-1]} output unit(s), but the {data.task} target needs "
            f"{data.n_out}"
        )


_DECAYING = ("adamw", "rmsprop", "adagrad", "lars", "lamb")
#: Each hyperparameter option (its keyword) and the optimizers that take it.
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "momentum": ("sgd", "rmsprop", "lars"),
    "nesterov": ("sgd", "lars"),
    "weight_decay": _DECAYING,
    "decay_biases": _DECAYING,
    "beta1": ("adam", "adamw", "lamb"),
    "beta2": ("adam", "adamw", "lamb"),
    "eps": ("adam", *_DECAYING),
    "centered": ("rmsprop",),
    "trust_coefficient": ("lars",),
}


def build_optimizer(args: argparse.Namespace, n_rows: int) -> Any:
    """The optimizer of --optimizer, --lr (scaled by --scale-lr) and the hyperparameter
    options given (:data:`HYPERPARAMETERS`); sgd's momentum is 0.9 unless given.

    ``n_rows`` is the training split's size: the batch of a full-batch run.

    Raises
    ------
    ValueError
        An option given for an optimizer that does not take it, or a value it refuses.
    """
    import mlp_accel as ma

    lr = args.lr
    if args.scale_lr:
        lr = ma.schedules.linear_scaling(lr, args.batch_size or n_rows)
    opt_kwargs: dict[str, Any] = {"lr": lr}
    if args.optimizer == "sgd":
        opt_kwargs["momentum"] = 0.9
    for keyword, takers in HYPERPARAMETERS.items():
        value = getattr(args, keyword)
        if value is None:
            continue
        if args.optimizer not in takers:
            option = "--" + keyword.replace("_", "-")
            raise ValueError(
                f"{option} applies to {', '.join(takers)}, not to --optimizer {args.optimizer}"
            )
        opt_kwargs[keyword] = value
    try:
        return ma.optim.get_optimizer(args.optimizer, **opt_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--optimizer {args.optimizer}: {exc}") from None


def resumed_epoch(args: argparse.Namespace) -> int:
    """The epoch that the checkpoint of --resume saved; sets --batch-size and --accumulate to
    its run's where they were left out, for the memory check and --scale-lr.

    Raises
    ------
    ValueError
        The checkpoint is unreadable or malformed.
    """
    import mlp_accel as ma

    state = ma.io.load_checkpoint(args.resume)["state"]
    if state["run"] is not None:
        if args.batch_size is None:
            args.batch_size = state["run"].batch_size
        if args.accumulate is None:
            args.accumulate = state["run"].accumulate
    return int(state["epoch"])


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """``batch_size``, ``accumulate`` and ``schedule``: those given, else ``fit``'s "not
    given" on a resume (the checkpoint's), else the fresh run's defaults."""
    import mlp_accel as ma
    from mlp_accel.training.resume import NOT_GIVEN

    resuming = bool(args.resume)
    options: dict[str, Any] = {
        "batch_size": NOT_GIVEN if resuming and args.batch_size is None else args.batch_size,
        "accumulate": args.accumulate or (NOT_GIVEN if resuming else 1),
        "schedule": NOT_GIVEN if resuming else None,
    }
    if args.schedule is not None or args.warmup is not None:
        options["schedule"] = ma.schedules.get_schedule(
            args.schedule, args.epochs, args.warmup or 0.0
        )
    return options


def _callbacks(args: argparse.Namespace) -> list[Any]:
    """The callbacks of --early-stopping, --reduce-lr-on-plateau, --save-best and --csv-log."""
    import mlp_accel as ma

    callbacks: list[Any] = []
    if args.early_stopping is not None:
        callbacks.append(ma.callbacks.EarlyStopping(patience=args.early_stopping))
    if args.reduce_lr_on_plateau is not None:
        factor, patience = args.reduce_lr_on_plateau
        plateau = ma.callbacks.ReduceLROnPlateau(args.monitor, factor=factor, patience=patience)
        callbacks.append(plateau)
    if args.save_best is not None:
        callbacks.append(ma.callbacks.ModelCheckpoint(args.save_best, monitor=args.monitor))
    if args.csv_log is not None:
        callbacks.append(ma.callbacks.CSVLogger(args.csv_log))
    return callbacks


def fit_options(args: argparse.Namespace, data: TrainingData) -> dict[str, Any]:
    """The keywords of ``fit`` that the arguments set, besides model, data and optimizer."""
    callbacks = _callbacks(args)
    return dict(
        epochs=args.epochs,
        progress=not args.no_progress,
        validation_data=data.validation_data,
        callbacks=callbacks,
        alpha=args.alpha,
        clip_norm=args.clip_norm,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        resume_from=args.resume,
        local_steps=args.local_steps,
        **_run_options(args),
    )


def _default_layers(n_in: int, n_out: int) -> list[int]:
    return [2, 4, 3, 1] if (n_in, n_out) == (2, 1) else [n_in, 64, n_out]


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return ""  # unreachable


def _memory_needed(widths: Sequence[int], dtype: str, batch_rows: int) -> int:
    """A lower bound of the peak bytes of building and training this network with Adam.

    Building draws every weight in float64 on the host and converts it to ``dtype`` while the
    draw is alive: ``(8 + itemsize)`` bytes per parameter. Training holds, in ``dtype``, the
    weights, gradients, Adam's two moments, and the divergence rollback's copies of the
    weights and moments (seven copies of the parameters), the temporaries of one update of the
    largest layer (two), and a batch's activations and deltas. The two peaks do not overlap:
    the float64 draw is freed before the first step.
    """
    itemsize = np.dtype(dtype).itemsize
    sizes = [a * b + b for a, b in zip(widths[:-1], widths[1:])]
    n_params = sum(sizes)
    build = (8 + itemsize) * n_params
    train = itemsize * (7 * n_params + 2 * max(sizes) + 2 * batch_rows * sum(widths[1:]))
    return max(build, train)


def _check_model_size(layers: Sequence[int], dtype: str, batch_rows: int) -> None:
    """Refuse, before allocating, a network that cannot fit in this machine's memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return  # no way to ask (Windows): the allocation itself will tell
    widths = [int(w) for w in layers]
    if len(widths) < 2 or min(widths) < 1:
        return  # the model reports malformed widths itself
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    need = _memory_needed(widths, dtype, batch_rows)
    if need > memory:
        raise ValueError(
            f"--layers {','.join(map(str, widths))} ({n_params:,} parameters) needs at least "
            f"{_bytes(need)} of memory to train, more than this machine's {_bytes(memory)}"
        )
