"""What the background compiler compiles: *tasks*, and the kernel calls of each.

A task is a small JSON-able dict naming kernels (``layers``, ``generic`` or ``fused``, see
:mod:`._numba_compile`), so a child process can be given one on its command line. Here: how
tasks are built from a network spec, which kernel calls compile a task (the argument types
are the ones the hooks pass), and whether a task is already compiled, in this process or in
Numba's disk cache. Nothing here imports Numba at module import.
"""

from __future__ import annotations

import json
from typing import Any

from ._numba_paths import fused_supports, generic_key, unrolled

__all__ = [
    "Task",
    "task_key",
    "run_task",
    "cached",
    "layer_task",
    "layer_items",
    "fused_task",
    "generic_task",
    "specialization_pays",
    "tasks_for",
]

#: A task: ``{"kind": "layers" | "generic" | "fused", "dtype": ..., "parallel": bool}`` plus,
#: for fused tasks, ``"widths"``, ``"activations"`` and ``"loss"``, for generic tasks
#: ``"activations"``, ``"loss"`` and ``"output"``. JSON, so a child can be given one.
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

    from . import _numba_kernels as K

    dtype_name, parallel = task["dtype"], bool(task["parallel"])
    dtype = np.dtype(dtype_name)
    mat = np.ones((2, 3), dtype)
    vec = np.ones(3, dtype)
    extra = (2,) if parallel else ()
    calls: list[tuple[Any, tuple]] = []
    for activation in task.get("activations", []):
        m = K.layer_module(activation, dtype_name)
        forward = m.dense_forward_parallel if parallel else m.dense_forward
        backward = m.dense_backward_parallel if parallel else m.dense_backward
        calls.append((forward, (mat.copy(), vec, mat.copy(), *extra)))
        calls.append((backward, (mat, mat, mat * 0.5, mat.copy(), vec.copy(), *extra)))
    for loss, activation in task.get("outputs", []):
        m = K.output_module(loss, activation, dtype_name)
        gradient = m.output_loss_gradient_parallel if parallel else m.output_loss_gradient
        calls.append((gradient, (mat, mat * 0.5, mat, 1.0, mat.copy(), *extra)))
        if not parallel:
            calls.append((m.loss_sum, (mat, mat * 0.5, mat)))
    if task.get("optim", False):
        adam = K.KERNELS["adam_update"][1 if parallel else 0]
        for p in (mat.copy(), vec.copy()):
            calls.append((adam, (p, p * 0, p * 0, p * 0, 0.1, 0.9, 0.999, 1e-8, 0.1, 0.01, *extra)))
            if not parallel:
                calls.append((K.sgd_update, (p, p * 0, 0.1)))
                calls.append((K.sgd_momentum_update, (p, p * 0, p * 0, 0.1, 0.9, False)))
    return calls


def _register_custom(task: Task) -> None:
    """Register the user-defined activations a task carries (a child knows only built-ins)."""
    custom = task.get("custom")
    if custom:
        from ..ops.table import register_activation

        for name, spec in custom.items():
            register_activation(name, spec["expr"], spec.get("derivative"))


def _fused_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the fused train and forward kernels of a spec."""
    import numpy as np

    from . import _numba_fused

    spec = _spec_of(task)
    module = _numba_fused.load_module(spec)
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
    if task["parallel"]:
        train, forward = module.train_parallel, module.forward_parallel
    else:
        train, forward = module.train_serial, module.forward_serial
    return [(train, (X, y, *params, 1.0, 2, block)), (forward, (X, *params, 2, block))]


def _generic_calls(task: Task) -> list[tuple[Any, tuple]]:
    """``(kernel, args)`` pairs that compile the generic train and forward kernels of a task
    (on a small sample shape: the compiled code is the same for every shape)."""
    from . import _numba_generic

    key = (task["dtype"], tuple(task["activations"]), task["loss"], task["output"])
    module = _numba_generic.load_module(key)
    X, Y, P, tables = _numba_generic.sample_arguments(key)
    if task["parallel"]:
        train, forward = module.train_parallel, module.forward_parallel
    else:
        train, forward = module.train_serial, module.forward_serial
    return [(train, (X, Y, P, *tables, 1.0, 2)), (forward, (X, P, *tables, 2))]


def _spec_of(task: Task) -> Any:
    from .base import NetworkSpec

    return NetworkSpec(
        tuple(int(w) for w in task["widths"]),
        tuple(task["activations"]),
        task["loss"],
        task["dtype"],
    )


def _calls(task: Task) -> list[tuple[Any, tuple]]:
    _register_custom(task)
    if task["kind"] == "layers":
        return _layer_calls(task)
    if task["kind"] == "fused":
        return _fused_calls(task)
    if task["kind"] == "generic":
        return _generic_calls(task)
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


def cached(task: Task) -> bool:
    """Whether every kernel of ``task`` is compiled in this process or in the disk cache."""
    return all(_in_memory(k, a) or _on_disk(k, a) for k, a in _calls(task))


def _custom(names: Any) -> dict[str, Any]:
    from ..ops.table import custom_activations

    return custom_activations(list(names))


def layer_task(
    dtype: str,
    parallel: bool = False,
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
        "parallel": bool(parallel),
        "activations": activations,
        "outputs": [list(pair) for pair in outputs],
        "optim": bool(optim),
    }
    custom = _custom([*activations, *(act for _, act in outputs)])
    if custom:
        task["custom"] = custom
    return task


def layer_items(spec: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """The activations and ``(loss, activation)`` output pairs a model of ``spec`` runs on
    the per-layer path (the output pair of its hook, and the matched pair of ``loss_sum``);
    the identity is always among the activations."""
    from ..ops.table import get_loss

    fused_activation = get_loss(spec.loss).fused_activation
    outputs = {(spec.loss, spec.activations[-1])}
    if fused_activation is not None:
        outputs.add((spec.loss, fused_activation))
    # The output layer's backward runs through the identity (its dL/dz is already known).
    return sorted({*spec.activations, "identity"}), sorted(outputs)


def fused_task(spec: Any, parallel: bool = False) -> Task:
    """The task of the fused kernels of the narrow network ``spec``."""
    task: Task = {
        "kind": "fused",
        "widths": [int(w) for w in spec.widths],
        "activations": list(spec.activations),
        "loss": spec.loss,
        "dtype": spec.dtype,
        "parallel": bool(parallel),
    }
    custom = _custom(spec.activations)
    if custom:
        task["custom"] = custom
    return task


def generic_task(spec: Any, parallel: bool = False) -> Task:
    """The task of the generic fused kernels that serve the narrow network ``spec`` (and
    every other shape with its dtype, set of activations and output)."""
    dtype, activations, loss, output = generic_key(spec)
    task: Task = {
        "kind": "generic",
        "dtype": dtype,
        "parallel": bool(parallel),
        "activations": list(activations),
        "loss": loss,
        "output": output,
    }
    custom = _custom(activations)
    if custom:
        task["custom"] = custom
    return task


def specialization_pays(spec: Any) -> bool:
    """Whether the kernel specialized on ``spec``'s widths beats the generic fused kernel.

    Measured (serial steps, float32 and float64, 2-core AVX2 machine): only the unrolled
    per-sample kernel of the smallest networks does (generic 1.5-2.0x slower on 2-4-3-1 at
    100,000 rows); the lane-block kernel of larger ones was slower than the generic kernel on
    every shape measured (0.55-0.82x its time on 64-48-10, 13-32-3, 64-64-64-10).
    """
    return fused_supports(spec) and unrolled(spec)


def tasks_for(spec: Any, parallel: bool = True) -> list[Task]:
    """Every task a model of ``spec`` may run on the numba backend, serial ones first:
    per-layer kernels, then for a narrow network the generic fused kernels and, where
    :func:`specialization_pays`, the specialized ones."""
    variants = (False, True) if parallel else (False,)
    activations, outputs = layer_items(spec)
    tasks = [layer_task(spec.dtype, p, activations, outputs) for p in variants]
    if fused_supports(spec):
        tasks += [generic_task(spec, p) for p in variants]
    if specialization_pays(spec):
        tasks += [fused_task(spec, p) for p in variants]
    return tasks
