"""What a numba model compiles: *tasks*, the kernel calls of each, and the compile itself.

A task is a small dict naming kernels (``layers``, ``generic`` or ``fused``). Here: which
tasks a network spec needs on each kernel tier, which kernel calls compile a task (the
argument types are the ones the hooks pass), whether a task is already compiled (in this
process or in Numba's disk cache, for the message only: what runs never depends on it), and
:func:`compile_tasks`, which compiles them in the calling thread before a fit's first step,
saying so on standard error when a compile (not a cache load) is needed. Nothing here
imports Numba at module import.
"""

from __future__ import annotations

import json
from typing import Any

from .paths import fused_supports, generic_key, unrolled

__all__ = [
    "Task",
    "task_key",
    "run_task",
    "cached",
    "layer_task",
    "layer_items",
    "fused_task",
    "generic_task",
    "optimizer_task",
    "specialization_pays",
    "runnable_tier",
    "tasks_for",
    "describe",
    "compile_tasks",
    "cache_location",
]

#: A task: ``{"kind": "layers" | "generic" | "fused" | "optimizer", "dtype": ...}`` plus, for
#: fused tasks, ``"widths"``, ``"activations"`` and ``"loss"``, for generic tasks
#: ``"activations"``, ``"loss"`` and ``"output"``, for optimizer tasks the table's ``"rule"``.
Task = dict[str, Any]


def task_key(task: Task) -> str:
    """A stable name of ``task`` (its JSON with sorted keys)."""
    return json.dumps(task, sort_keys=True)


# -- the kernel calls of a task -----------------------------------------------------------
def _layer_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the per-layer kernels a task names: the layer
    kernels of its activations, the output kernels of its (loss, activation) pairs and, with
    ``optim``, the optimizer kernels.

    The argument types are the ones the hooks pass (C-contiguous 2-D and 1-D arrays of the
    dtype, Python floats and bools), so the compiled signatures are the ones used.
    """
    import numpy as np

    from . import kernels as K

    dtype_name = task["dtype"]
    dtype = np.dtype(dtype_name)
    mat = np.ones((2, 3), dtype)
    vec = np.ones(3, dtype)
    calls: list[tuple[Any, tuple]] = []
    for activation in task.get("activations", []):
        m = K.layer_module(activation, dtype_name)
        calls.append((m.dense_forward, (mat.copy(), vec, mat.copy())))
        calls.append((m.dense_backward, (mat, mat, mat * 0.5, mat.copy(), vec.copy())))
    for loss, activation in task.get("outputs", []):
        m = K.output_module(loss, activation, dtype_name)
        calls.append((m.output_loss_gradient, (mat, mat * 0.5, mat, 1.0, mat.copy())))
        calls.append((m.loss_sum, (mat, mat * 0.5, mat)))
    if task.get("optim", False):
        for p in (mat.copy(), vec.copy()):
            calls.append(
                (K.adam_update, (p, p * 0, p * 0, p * 0, 0.1, 0.9, 0.999, 1e-8, 0.1, 0.01))
            )
            calls.append((K.sgd_update, (p, p * 0, 0.1)))
            calls.append((K.sgd_momentum_update, (p, p * 0, p * 0, 0.1, 0.9, False)))
    return calls


def _fused_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the fused train and forward kernels of a spec."""
    import numpy as np

    from . import fused

    spec = _spec_of(task)
    module = fused.load_module(spec)
    dtype = np.dtype(spec.dtype)
    d = spec.widths
    rng = np.random.default_rng(0)
    params = []
    for n_in, n_out in zip(d[:-1], d[1:]):
        params.append(np.asarray(rng.standard_normal((n_in, n_out)), dtype))
        params.append(np.asarray(rng.standard_normal(n_out), dtype))
    X = np.zeros((3, d[0]), dtype)
    y = np.zeros((3, d[-1]), dtype)
    block = int(module.BLOCK)
    return [(module.train, (X, y, *params, 1.0, block)), (module.forward, (X, *params, block))]


def _generic_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the generic train and forward kernels of a task
    (on a small sample shape: the compiled code is the same for every shape)."""
    from . import generic

    key = (task["dtype"], tuple(task["activations"]), task["loss"], task["output"])
    module = generic.load_module(key)
    X, Y, P, tables = generic.sample_arguments(key)
    return [(module.train, (X, Y, P, *tables, 1.0)), (module.forward, (X, P, *tables))]


def _optimizer_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the kernels of one rule of the optimizer table,
    for 2-D and 1-D tensors, with the Python floats its hook passes."""
    import numpy as np

    from ...ops.optimizers import optimizer_row
    from . import kernels as K

    row = optimizer_row(task["rule"])
    module = K.optimizer_module(row.name, task["dtype"])
    scalars = [0.5] * (len(row.scalars) + len(row.tensor_scalars))
    calls: list[tuple[Any, tuple]] = []
    for shape in ((2, 3), (3,)):
        arrays = [np.ones(shape, task["dtype"]) for _ in range(2 + len(row.state))]
        if row.layerwise:
            calls.append((module.first, (*arrays, *scalars)))
            calls.append((module.second, (*arrays, *scalars, 0.5)))
        else:
            calls.append((module.update, (*arrays, *scalars)))
    return calls


def _spec_of(task: Task) -> Any:
    from ..base import NetworkSpec

    return NetworkSpec(
        tuple(int(w) for w in task["widths"]),
        tuple(task["activations"]),
        task["loss"],
        task["dtype"],
    )


def _calls(task: Task) -> list[tuple[Any, tuple]]:
    if task["kind"] == "layers":
        return _layer_calls(task)
    if task["kind"] == "fused":
        return _fused_calls(task)
    if task["kind"] == "generic":
        return _generic_calls(task)
    if task["kind"] == "optimizer":
        return _optimizer_calls(task)
    raise ValueError(f"unknown compile task kind {task['kind']!r}")


def run_task(task: Task) -> None:
    """Compile ``task``'s kernels in this thread (or load them from Numba's disk cache)."""
    for kernel, args in _calls(task):
        kernel(*args)


def _on_disk(kernel: Any, args: tuple) -> bool:
    """Whether Numba's disk cache holds ``kernel`` for the types of ``args``.

    Reads Numba's cache index the way ``Dispatcher`` does (private API: any surprise counts
    as "not cached", which costs a child process that finds everything cached).
    """
    try:
        from numba import typeof

        cache = kernel._cache
        sig = tuple(typeof(a) for a in args)
        key = cache._index_key(sig, kernel.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:
        return False


def _in_memory(kernel: Any, args: tuple) -> bool:
    """Whether ``kernel`` is already compiled in this process for the types of ``args``."""
    try:
        from numba import typeof

        sig = tuple(typeof(a) for a in args)
        return any(tuple(s) == sig for s in kernel.signatures)
    except Exception:
        return False


def _all_cached(calls: list[tuple[Any, tuple]]) -> bool:
    return all(_in_memory(k, a) or _on_disk(k, a) for k, a in calls)


def cached(task: Task) -> bool:
    """Whether every kernel of ``task`` is compiled in this process or in the disk cache."""
    return _all_cached(_calls(task))


def layer_task(
    dtype: str,
    activations: Any = (),
    outputs: Any = (),
    optim: bool = True,
) -> Task:
    """The task of the per-layer kernels of ``dtype``: the layer kernels of ``activations``,
    the output kernels of the ``(loss, activation)`` pairs in ``outputs`` and, with ``optim``,
    the optimizer kernels."""
    activations = sorted(set(activations))
    outputs = sorted({(str(loss), str(act)) for loss, act in outputs})
    task: Task = {
        "kind": "layers",
        "dtype": str(dtype),
        "activations": activations,
        "outputs": [list(pair) for pair in outputs],
        "optim": bool(optim),
    }
    return task


def layer_items(spec: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """The activations and ``(loss, activation)`` output pairs a model of ``spec`` runs on
    the per-layer path (the output pair of its hook, and the matched pair of ``loss_sum``);
    the identity is always among the activations."""
    from ...ops.table import get_loss

    fused_activation = get_loss(spec.loss).fused_activation
    outputs = {(spec.loss, spec.activations[-1])}
    if fused_activation is not None:
        outputs.add((spec.loss, fused_activation))
    # The output layer's backward runs through the identity (its dL/dz is already known).
    return sorted({*spec.activations, "identity"}), sorted(outputs)


def fused_task(spec: Any) -> Task:
    """The task of the fused kernels of the narrow network ``spec``."""
    task: Task = {
        "kind": "fused",
        "widths": [int(w) for w in spec.widths],
        "activations": list(spec.activations),
        "loss": spec.loss,
        "dtype": spec.dtype,
    }
    return task


def generic_task(spec: Any) -> Task:
    """The task of the generic fused kernels that serve the narrow network ``spec`` (and
    every other shape with its dtype, set of activations and output)."""
    dtype, activations, loss, output = generic_key(spec)
    task: Task = {
        "kind": "generic",
        "dtype": dtype,
        "activations": list(activations),
        "loss": loss,
        "output": output,
    }
    return task


def optimizer_task(dtype: str, rule: str) -> Task:
    """The task of the kernels of the optimizer table's rule ``rule`` (one per rule and dtype,
    whatever the network)."""
    task: Task = {"kind": "optimizer", "dtype": str(dtype), "rule": str(rule)}
    return task


def specialization_pays(spec: Any) -> bool:
    """Whether a kernel specialized on ``spec``'s widths is generated: the unrolled kernel of
    the smallest networks, measured 1.5-5x faster than the generic kernel on 2-4-3-1 (a
    kernel specialized on a larger narrow shape was slower than the generic one on every
    shape measured: 0.55-0.82x its speed on 64-48-10, 13-32-3, 64-64-64-10)."""
    return fused_supports(spec) and unrolled(spec)


def runnable_tier(spec: Any, tier: str) -> str:
    """The tier ``spec`` runs when ``tier`` is asked for: the per-layer kernels for a network
    with no network kernel, the generic kernel for one too large to specialize on."""
    if tier == "layers" or not fused_supports(spec):
        return "layers"
    if tier == "specialized" and not specialization_pays(spec):
        return "generic"
    return tier


def tasks_for(
    spec: Any, tier: str = "all", evaluate: bool = True, optimizer: str | None = None
) -> list[Task]:
    """The tasks a model of ``spec`` compiles on the numba backend for kernel ``tier``.

    ``"layers"``: the per-layer kernels. ``"generic"`` / ``"specialized"``: the optimizer
    kernels and the network kernel of that tier, and with ``evaluate`` (a fit with
    validation data, or anything else that computes a loss outside a training step) the
    per-layer kernels too. ``"all"``: every tier ``spec`` may run (``mlp-accel warmup``).

    The optimizer kernels are SGD's and Adam's (with the per-layer kernels), or with
    ``optimizer`` (a rule of the optimizer table) that rule's alone, a task of its own.
    """
    activations, outputs = layer_items(spec)
    own = [] if optimizer is None else [optimizer_task(spec.dtype, optimizer)]
    every_layer = layer_task(spec.dtype, activations, outputs, optim=optimizer is None)
    if tier != "all":
        tier = runnable_tier(spec, tier)
    if tier == "layers" or not fused_supports(spec):
        return [every_layer, *own]
    if evaluate or tier == "all":
        tasks = [every_layer]
    else:
        tasks = [] if optimizer is not None else [layer_task(spec.dtype)]
    if tier in ("generic", "all"):
        tasks.append(generic_task(spec))
    if tier == "specialized" or (tier == "all" and specialization_pays(spec)):
        tasks.append(fused_task(spec))
    return tasks + own


def describe(task: Task) -> str:
    """What ``task`` compiles, for the message a compile prints."""
    if task["kind"] == "optimizer":
        return f"the {task['rule']} optimizer kernels ({task['dtype']}, once per machine)"
    if task["kind"] == "layers":
        if not task["activations"] and not task["outputs"]:
            return f"optimizer kernels ({task['dtype']}, once per machine)"
        names = ", ".join(task["activations"])
        return f"per-layer kernels ({task['dtype']}: {names}; once per machine)"
    if task["kind"] == "generic":
        hidden = ", ".join(a for a in task["activations"] if a != task["output"]) or "identity"
        return (
            f"the network kernel for {task['dtype']} {hidden} networks with a "
            f"{task['output']} output, once per machine"
        )
    widths = "-".join(str(w) for w in task["widths"])
    return f"the network kernel specialized on {widths} ({task['dtype']})"


def compile_tasks(tasks: list[Task], stream: Any = None) -> float:
    """Compile (or load from the disk cache) every kernel of ``tasks`` in this thread, before
    a first step. Where a kernel is not cached, one line says what compiles and another how
    long it took, on ``stream`` (standard error by default; ``False``: silent).

    Returns
    -------
    float
        Seconds spent compiling (0 when everything was cached).
    """
    import sys
    import time

    out = sys.stderr if stream is None else stream
    spent = 0.0
    for task in tasks:
        calls = _calls(task)
        compiling = not _all_cached(calls)
        if compiling and out:
            print(f"mlp_accel: compiling {describe(task)} with Numba ...", file=out, flush=True)
        start = time.perf_counter()
        for kernel, args in calls:  # a compile, or a load from the disk cache: milliseconds
            kernel(*args)
        if compiling:
            seconds = time.perf_counter() - start
            spent += seconds
            if out:
                print(
                    f"mlp_accel: compiled in {seconds:.1f} s (cached on disk)", file=out, flush=True
                )
    return spent


def cache_location() -> str:
    """Where the compiled kernels are kept: Numba's cache of the per-layer kernels, and the
    directory of the generated network modules (with their Numba cache)."""
    import os

    from . import kernels

    try:
        layers = str(kernels.adam_update._cache._cache_path)
    except AttributeError:  # Numba's private layout changed: name what decides it
        layers = os.environ.get("NUMBA_CACHE_DIR") or "Numba's default cache"
    return f"{layers} (per-layer kernels), {kernels.cache_dir()} (network kernels)"
