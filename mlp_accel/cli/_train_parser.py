"""The arguments of ``mlp-accel train``, one function per argument group."""

from __future__ import annotations

import argparse
from typing import Any

from ._activations import ACTIVATIONS_HELP, add_define_option
from ._options import (
    _add_gpu_options,
    _add_header_option,
    _add_seed_option,
    _add_threads_option,
    _float_in,
    _int_list,
    _momentum,
    _name_list,
    _non_negative_float,
    _open_fraction,
    _positive_float,
    _positive_int,
)

#: --lr by task. 300 full-batch epochs at 0.03 overfit a small regression set (diabetes:
#: train R2 0.97, test R2 -0.11); at 0.001 its test R2 is 0.42, median over seeds 0-4.
DEFAULT_LR = {"classification": 0.03, "regression": 0.001}


def add_arguments(t: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add train's arguments to its parser ``t``; ``--backend`` takes ``backend_option``."""
    _add_data_options(t)
    _add_model_options(t, backend_option)
    _add_optimization_options(t)
    _add_large_run_options(t)
    _add_checkpoint_options(t)
    _add_output_options(t)
    _add_dask_options(t)


def _add_data_options(t: argparse.ArgumentParser) -> None:
    from ..data import DATASETS

    data = t.add_argument_group("data")
    src = data.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset", default="circles", choices=DATASETS, help="built-in dataset (default circles)"
    )
    src.add_argument(
        "--data",
        metavar="FILE",
        help="CSV (header row optional; last column the target, numbers or class names; "
        "the header's names are kept with the model), .npy (target last; memory-mapped) or "
        ".npz (X, y)",
    )
    _add_header_option(data)
    data.add_argument(
        "--task",
        choices=("binary", "multiclass", "regression"),
        help="task (default: the built-in dataset's, or guessed from the target of --data)",
    )
    data.add_argument(
        "--test-size",
        type=_open_fraction,
        default=0.25,
        metavar="FRACTION",
        help="held-out fraction (default 0.25)",
    )
    _add_seed_option(data, "seeds data, split, initial weights and shuffles (default 0)")


def _add_model_options(t: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    from ..initializers import INITIALIZERS

    model = t.add_argument_group("model")
    model.add_argument(
        "--layers",
        type=_int_list,
        metavar="N,N,...",
        help="widths, e.g. 2,4,3,1 (default: 2,4,3,1 for 2-D data, else n_in,64,n_out)",
    )
    model.add_argument(
        "--activations",
        type=_name_list,
        metavar="NAME,...",
        help=ACTIVATIONS_HELP,
    )
    add_define_option(model)
    model.add_argument(
        "--loss",
        metavar="NAME",
        help="binary_cross_entropy, cross_entropy, squared_error or poisson "
        "(default: from the task)",
    )
    model.add_argument(
        "--init", default="glorot", choices=INITIALIZERS, help="initialization (default glorot)"
    )
    model.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"), help="(default float32)"
    )
    model.add_argument("--backend", **backend_option)
    _add_gpu_options(model)


def _add_optimization_options(t: argparse.ArgumentParser) -> None:
    from ..optim import OPTIMIZERS

    opt = t.add_argument_group("optimization")
    opt.add_argument(
        "--epochs",
        type=_positive_int,
        default=300,
        metavar="N",
        help="passes over the data (default 300)",
    )
    opt.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="rows per step (default: all; with --resume, the checkpoint's)",
    )
    opt.add_argument(
        "--optimizer", default="adam", choices=tuple(OPTIMIZERS), help="(default adam)"
    )
    opt.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"learning rate (default {DEFAULT_LR['classification']}; "
        f"{DEFAULT_LR['regression']} for regression)",
    )
    _add_hyperparameter_options(opt)
    opt.add_argument(
        "--alpha", type=_non_negative_float, default=0.0, help="L2 penalty (default 0)"
    )
    opt.add_argument(
        "--early-stopping",
        type=_positive_int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs",
    )
    opt.add_argument(
        "--validation-fraction",
        type=_open_fraction,
        metavar="FRACTION",
        default=0.1,
        help="share of the training split held out for --early-stopping (default 0.1)",
    )


def _add_hyperparameter_options(opt: Any) -> None:
    """The optimizers' hyperparameters; each applies to the optimizers of
    :data:`._train_build.HYPERPARAMETERS` (another is a one-line error), and one left out
    keeps the optimizer's default."""
    opt.add_argument(
        "--momentum",
        type=_momentum,
        default=None,
        help="for sgd, rmsprop, lars (default 0.9 for sgd and lars, 0 for rmsprop)",
    )
    opt.add_argument(
        "--nesterov", action="store_true", default=None, help="Nesterov momentum (sgd, lars)"
    )
    opt.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        metavar="W",
        help="decoupled for adamw (default 0.01) and lamb, added to the gradient for "
        "rmsprop, adagrad, lars (default 0); weights only unless --decay-biases",
    )
    opt.add_argument(
        "--decay-biases",
        action="store_true",
        default=None,
        help="apply --weight-decay to the biases too",
    )
    opt.add_argument("--beta1", type=_momentum, default=None, help="adam, adamw, lamb (0.9)")
    opt.add_argument("--beta2", type=_momentum, default=None, help="adam, adamw, lamb (0.999)")
    opt.add_argument(
        "--eps",
        type=_positive_float,
        default=None,
        help="the denominator's epsilon (default: the optimizer's)",
    )
    opt.add_argument("--centered", action="store_true", default=None, help="centered rmsprop")
    opt.add_argument(
        "--trust-coefficient",
        type=_positive_float,
        default=None,
        metavar="ETA",
        help="lars's trust coefficient (default 0.001)",
    )


def _add_large_run_options(t: argparse.ArgumentParser) -> None:
    large = t.add_argument_group("large runs")
    large.add_argument(
        "--schedule",
        default=None,
        choices=("constant", "step", "cosine"),
        help="learning-rate schedule (default constant; with --resume, the checkpoint's)",
    )
    large.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=None,
        metavar="EPOCHS",
        help="epochs of linear learning-rate warmup (default 0; with --resume, the checkpoint's)",
    )
    large.add_argument(
        "--scale-lr", action="store_true", help="linear scaling rule: lr * batch / 256"
    )
    large.add_argument(
        "--clip-norm",
        type=_positive_float,
        default=None,
        metavar="NORM",
        help="clip the global gradient norm",
    )
    large.add_argument(
        "--accumulate",
        type=_positive_int,
        default=None,
        metavar="K",
        help="micro-batches per step (gradient accumulation; default 1; with --resume, the "
        "checkpoint's)",
    )
    _add_threads_option(
        large,
        "worker threads that run a batch's fixed chunks (default: the usable CPUs); the "
        "count changes the speed, never the result",
    )


#: What --monitor watches: the epoch logs that say how training goes.
MONITORED = ("val_loss", "val_accuracy", "loss")


def _plateau(text: str) -> tuple[float, int]:
    """``FACTOR[:PATIENCE]`` of --reduce-lr-on-plateau: a factor in (0, 1), patience >= 1."""
    factor_text, _, patience_text = text.partition(":")
    factor = _float_in(0.0, 1.0, True, True, "a factor strictly between 0 and 1")(factor_text)
    return factor, _positive_int(patience_text) if patience_text else 10


def _add_checkpoint_options(t: argparse.ArgumentParser) -> None:
    ckpt = t.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint", metavar="FILE", help="write a training checkpoint here")
    ckpt.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=1,
        metavar="N",
        help="epochs between checkpoints (default 1)",
    )
    ckpt.add_argument(
        "--resume",
        metavar="FILE",
        help="continue the run of a checkpoint, with its batch size, accumulation, schedule "
        "and callbacks' states",
    )
    ckpt.add_argument(
        "--save-best",
        metavar="FILE",
        help="save the model of the best epoch by --monitor here (a model file, as --save), "
        "replaced when it improves",
    )
    ckpt.add_argument(
        "--monitor",
        choices=MONITORED,
        default="val_loss",
        help="what --save-best and --reduce-lr-on-plateau watch (default val_loss; val_* "
        "hold out --validation-fraction of the training rows)",
    )
    ckpt.add_argument(
        "--reduce-lr-on-plateau",
        type=_plateau,
        metavar="FACTOR[:PATIENCE]",
        help="multiply the learning rate by FACTOR after PATIENCE epochs (default 10) without "
        "an improvement of --monitor",
    )


def _add_output_options(t: argparse.ArgumentParser) -> None:
    output = t.add_argument_group("output")
    output.add_argument("--save", metavar="FILE", help="save the trained model (.npz)")
    output.add_argument(
        "--plot",
        metavar="FILE.png",
        help="loss curves (with validation rows, the validation loss and accuracy too) and, "
        "for 2-D data, the decision boundary on the test split",
    )
    output.add_argument(
        "--csv-log",
        metavar="FILE",
        help="write the epoch logs here as CSV (epoch, loss, lr, time, samples_per_sec, val_*), "
        "the whole file rewritten atomically after every epoch",
    )
    output.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_dask_options(t: argparse.ArgumentParser) -> None:
    dist = t.add_argument_group("distributed (Dask)")
    dask_opts = dist.add_mutually_exclusive_group()
    dask_opts.add_argument(
        "--dask-workers",
        type=_positive_int,
        metavar="N",
        help="train data-parallel on a local Dask cluster of N worker processes",
    )
    dask_opts.add_argument(
        "--scheduler", metavar="ADDRESS", help="train data-parallel on this Dask scheduler"
    )
    dist.add_argument(
        "--local-steps",
        type=_positive_int,
        metavar="N",
        default=1,
        help="local SGD steps between weight averages (not exact; default 1)",
    )
