"""``mlp-accel warmup``: compile a network's Numba kernels ahead of use, for a deployment."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._activations import ACTIVATIONS_HELP, activation_table, add_define_option
from ._options import _int_list, _name_list

__all__ = ["add_arguments", "run"]


def add_arguments(w: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add the arguments of ``warmup`` to its parser ``w``."""
    spec = w.add_mutually_exclusive_group(required=True)
    spec.add_argument("--layers", type=_int_list, help="widths, e.g. 13,64,3")
    spec.add_argument("--model", metavar="FILE", help="a model saved by train --save")
    w.add_argument(
        "--activations",
        type=_name_list,
        metavar="NAME,...",
        help=f"{ACTIVATIONS_HELP} (default: relu..., with --layers)",
    )
    add_define_option(w)
    w.add_argument("--loss", help="default: from the output activation")
    w.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float64"),
        help="(default: the model's, else float32)",
    )
    from ..optim import OPTIMIZERS

    w.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        default=None,
        help="also compile this optimizer's kernels, every variant (sgd's and adam's are "
        "always compiled)",
    )


def _rules(optimizer: str | None) -> list[str]:
    """The optimizer table's rules of ``optimizer``'s variants (none for sgd and adam)."""
    from ..ops.optimizers import OPTIMIZER_ROWS

    if optimizer is None:
        return []
    return [r for r in OPTIMIZER_ROWS if r == optimizer or r.startswith(optimizer + "_")]


def run(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from ..backends import get_backend
    from ..backends.numba import tasks as T
    from ..backends.numba.paths import fused_supports

    if args.model is not None:
        if args.define_activation:
            # the file's own formulas are the ones it runs; another would be silently unused
            raise ValueError(
                "--define-activation goes with --layers: a --model file carries its own formulas"
            )
        saved = ma.load(args.model, backend="numpy")
        layers, activations, loss = saved.layers, saved.activations, saved.loss
        dtype = args.dtype or saved.dtype
        table = saved.activation_table  # the file's own formulas, never registered
    else:
        layers, activations, loss = args.layers, args.activations, args.loss
        dtype = args.dtype or "float32"
        table = activation_table(args.define_activation)
    # the model resolves defaults and validates the spec, on NumPy (nothing compiles)
    model = ma.MLP(
        layers, activations, loss, backend="numpy", dtype=dtype, custom_activations=table
    )
    spec = model.spec
    backend = get_backend("numba")
    tasks = T.tasks_for(spec, "all")
    extra = [T.optimizer_task(spec.dtype, rule) for rule in _rules(args.optimizer)]
    tasks += extra
    was_cached = [T.cached(task) for task in tasks]
    start = time.perf_counter()
    backend.warmup(spec)
    T.compile_tasks(extra, False)
    seconds = time.perf_counter() - start
    for task, hit in zip(tasks, was_cached):
        print(f"{'cached  ' if hit else 'compiled'} {T.describe(task)}")
    fused = "fused kernels for" if fused_supports(spec) else "no fused kernel for"
    # the user's names: a defined activation runs under its formula's key
    print(f"{fused} {','.join(map(str, spec.widths))} {','.join(model.activations)} {spec.loss}")
    print(f"took {seconds:.1f} s; cache: {T.cache_location()}")
    return 0
