"""Numba kernels of the ``numba`` backend: optimizer kernels, and layer kernels rendered
from the math table.

The SGD and Adam kernels are small ``@njit`` functions of this module; the kernels of the
optimizer table (:mod:`mlp_accel.ops.optimizers`) are rendered per rule
(:func:`optimizer_module`). The layer kernels (bias + activation, activation derivative +
column sums, output loss + gradient) are rendered per activation (and per loss) from
:mod:`mlp_accel.ops.table` into small generated modules (:func:`layer_module`,
:func:`output_module`), written to :func:`cache_dir` and imported from there, so Numba's
``cache=True`` keeps their machine code on disk: each is compiled once per (activation,
dtype), whatever the widths, and a user-registered activation gets the same kernels as a
built-in one.

Each kernel is named after the backend hook it replaces and works in place on C-contiguous
float32/float64 arrays. Every kernel is serial and ``nogil``: a batch is parallelized above
the kernels, by running fixed chunks of its rows on the package's worker threads
(``backends/_chunks.py``), so no kernel starts Numba's own thread pool and the thread
count never changes a result.

``fastmath`` is restricted to reassociation-type flags: with ``nnan``/``ninf`` the compiler
may fold away the NaN and inf checks that catch a diverging training run, and NaN/inf must
propagate as in NumPy (an overflowing hidden layer gives NaN outputs on every backend).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np
from numba import njit

from ...ops import expr as E
from ...ops.table import ActivationRow, LossRow, activation_row
from .paths import cache_dir_candidate
from .vecmath import HELPER_DTYPES
from .vecmath import math_helpers as _math_helpers

__all__ = [
    "FASTMATH",
    "KERNELS",
    "Writer",
    "Constants",
    "cache_dir",
    "import_source",
    "module_header",
    "render_activation",
    "render_derivative",
    "render_loss_value",
    "render_loss_grad",
    "emit_softmax",
    "layer_module",
    "output_module",
    "optimizer_module",
]

#: Only reassociation-type flags: keep NaN/inf semantics intact.
FASTMATH = {"reassoc", "contract", "arcp"}

# error_model="numpy": a float division by zero gives inf/NaN (as NumPy does, and the
# divergence check catches) instead of a Python exception, whose check per division keeps
# LLVM from vectorizing any loop that divides (Adam's update, softmax).
_jit = njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")


# -- source generation ---------------------------------------------------------------------
class Writer:
    """Indented source lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.consts = Constants()  # the typed numbers the rendered expressions use

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def indent(self) -> Writer:
        self.depth += 1
        return self

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1


class Constants:
    """Typed module constants for the numbers of rendered expressions.

    Python float literals are float64 to Numba; module-level ``DT(...)`` constants keep a
    float32 kernel in float32 (and vectorized twice as wide). ``_0``, ``_1`` and ``_HALF``
    always exist.
    """

    _FIXED: ClassVar[dict[float, str]] = {0.0: "_0", 1.0: "_1", 0.5: "_HALF"}

    def __init__(self) -> None:
        self.names: dict[float, str] = {}

    def __call__(self, value: float) -> str:
        if value in self._FIXED:
            return self._FIXED[value]
        if value not in self.names:
            self.names[value] = f"_K{len(self.names)}"
        return self.names[value]

    def lines(self) -> list[str]:
        """``_K0 = DT(...)`` definitions, in first-use order."""
        return [f"{name} = DT({value!r})" for value, name in self.names.items()]


def _template(text: str, **names: str) -> str:
    return text.format(**names)


#: libm's functions, for :func:`_functions`.
_LIBM = {f: f"math.{f}" for f in ("exp", "expm1", "log", "log1p", "tanh", "erf")}

#: Transcendental calls in ``f`` and ``f'`` together above which a fused kernel calls libm.
#: LLVM does not inline the helpers into a fused kernel's unrolled loop when there are this
#: many (mish: 14 per unit, about 90 in [2, 4, 3, 1]); the loop then runs scalar, where a
#: libm call is cheaper than a helper's (measured: mish's fused step 2.3x slower).
FUSED_HELPER_CALLS = 8


def _functions(row: ActivationRow, fused: bool) -> dict[str, str] | None:
    """The renderer's function names for ``row``: the vectorizable helpers (``None``), or
    libm's in a fused kernel whose activation calls more than :data:`FUSED_HELPER_CALLS`."""
    if not fused:
        return None
    calls = sum(
        _count_calls(tree) for tree in (row.forward_tree, row.derivative_tree) if tree is not None
    )
    return _LIBM if calls > FUSED_HELPER_CALLS else None


def _count_calls(node: E.Node) -> int:
    """Calls of the transcendental functions in ``node``."""
    if isinstance(node, (E.Num, E.Var)):
        return 0
    if isinstance(node, E.Neg):
        return _count_calls(node.arg)
    if isinstance(node, (E.BinOp, E.Compare)):
        return _count_calls(node.left) + _count_calls(node.right)
    return (node.fn in _LIBM) + sum(_count_calls(a) for a in node.args)


def render_activation(row: ActivationRow, z: str, const: Constants, fused: bool = False) -> str:
    """Python expression of ``f(z)`` (the row's Numba override where it has one);
    ``fused``: for a fused kernel (see :func:`_functions`)."""
    if "expr" in row.numba:
        return _template(row.numba["expr"], z=z)
    return E.to_python(row.forward_tree, {"z": z}, const, _functions(row, fused))


def render_derivative(
    row: ActivationRow, z: str, a: str, const: Constants, fused: bool = False
) -> str:
    """Python expression of ``f'(z)`` given ``z`` and ``a = f(z)``; ``fused`` as for
    :func:`render_activation`."""
    if "derivative" in row.numba:
        return _template(row.numba["derivative"], z=z, a=a)
    return E.to_python(row.derivative_tree, {"z": z, "a": a}, const, _functions(row, fused))


def render_loss_value(row: LossRow, z: str, a: str, y: str, const: Constants) -> str:
    """Python expression of one output element's loss (elementwise losses only)."""
    if "value" in row.numba:
        return _template(row.numba["value"], z=z, a=a, y=y)
    return E.to_python(row.value_tree, {"z": z, "a": a, "y": y}, const)


def render_loss_grad(row: LossRow, a: str, y: str, const: Constants) -> str:
    """Python expression of ``dL/da`` of one output element."""
    return E.to_python(row.grad_tree, {"a": a, "y": y, "z": "_0"}, const)


def emit_softmax(
    w: Writer, width: str, src: Callable[[str], str], dst: Callable[[str], str], exp: str
) -> None:
    """Lines of a softmax over ``src(k)``, ``k < width``, into ``dst(k)``.

    Leaves ``top`` (the maximum) and ``tot`` (the sum of ``exp(src - top)``) set, for a
    log-sum-exp. ``exp`` is the exponential to call on non-positive arguments. A NaN
    anywhere makes the whole row NaN, as NumPy's.
    """
    w(f"top = {src('0')}")
    w(f"for k in range(1, {width}):")
    w(f"    if {src('k')} > top:")
    w(f"        top = {src('k')}")
    w("tot = _0")
    w(f"for k in range({width}):")
    w(f"    e = {exp}({src('k')} - top)")
    w(f"    {dst('k')} = e")
    w("    tot += e")
    w("inv = _1 / tot")
    w(f"for k in range({width}):")
    w(f"    {dst('k')} *= inv")


# -- math that vectorizes ------------------------------------------------------------------
# The helpers every generated module defines (exp, log, log1p, tanh, erf, the sigmoid, ...)
# live in ._numba_math: branch-free versions of libm's functions that inline into the sample
# loop and let LLVM vectorize it, where a libm call keeps the loop scalar.


def module_header(title: str, dtype: str, consts: Constants) -> list[str]:
    """Imports, the dtype, typed constants and the math helpers of a generated module."""
    if dtype not in HELPER_DTYPES:
        raise ValueError(f"Numba kernels support float32 and float64, got {dtype!r}")
    lines = [
        f'"""Generated by mlp_accel for {title}; do not edit."""',
        "import math",
        "import numpy as np",
        "from numba import njit",
        f"DT = np.{dtype}",
        "_0 = DT(0.0)",
        "_1 = DT(1.0)",
        "_HALF = DT(0.5)",
        *consts.lines(),
        # sorted, so the source (and its hash, the file name) is the same in every process
        "FASTMATH = {" + ", ".join(repr(flag) for flag in sorted(FASTMATH)) + "}",
    ]
    return lines + _math_helpers(dtype)


#: Every generated kernel: ``nogil``, so the package's worker threads run chunks of a batch
#: side by side (see ``backends/_chunks.py``).
_SERIAL = "@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model='numpy')"


# -- generated modules: written to a cache directory, imported from there --------------------
def cache_dir() -> Path:
    """Where generated kernel modules (and Numba's cache of them) are kept.

    ``$MLP_ACCEL_CACHE_DIR``, else ``$NUMBA_CACHE_DIR/mlp_accel``, else
    ``$XDG_CACHE_HOME/mlp_accel/numba`` (``~/.cache`` by default). Where none of these can be
    written, one temporary directory for the process, removed when it exits (the kernels then
    compile again on every run: a warning says so, once, naming the setting to fix it).
    """
    path = cache_dir_candidate()
    if path in _fallback_dirs:  # one temporary directory per process, not one per call
        return Path(_fallback_dirs[path].name)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
        probe.close()
        return path
    except OSError as exc:
        import warnings

        fallback = tempfile.TemporaryDirectory(prefix="mlp_accel_numba_")
        _fallback_dirs[path] = fallback  # removed at exit by its finalizer
        warnings.warn(
            f"the kernel cache {path} cannot be written ({exc.strerror or exc}): Numba kernels "
            "are compiled for this process only; set MLP_ACCEL_CACHE_DIR to a writable folder",
            RuntimeWarning,
            stacklevel=3,
        )
        return Path(fallback.name)


_fallback_dirs: dict[Path, tempfile.TemporaryDirectory] = {}


def import_source(source: str, prefix: str = "mlp_accel_fused") -> ModuleType:
    """Write ``source`` to the cache directory (if it is not there) and import it.

    The file name is a hash of the source, so a changed generator never reuses stale code,
    and Numba's on-disk cache (keyed by the file) stays valid across processes.
    """
    digest = hashlib.sha1(source.encode()).hexdigest()[:20]
    name = f"{prefix}_{digest}"
    directory = cache_dir()
    path = directory / f"{name}.py"
    try:
        current = path.read_text() if path.exists() else None
    except OSError:
        current = None
    if current != source:
        # Write then rename, so a concurrent process never imports half a file.
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        # mkstemp makes the file 0600: a shared cache needs what the umask allows (0644 as a
        # rule), as any file this process creates would get.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import the generated kernel module {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # numba's cache locates functions through their module
    module_spec.loader.exec_module(module)
    return module


def _umask() -> int:
    """The process's umask, read without changing it (Linux's /proc), else 0o022."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # os.umask() can only be read by setting it, which would race other threads' files.
    return 0o022


_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}


def _cached(key: tuple, make: Callable[[], str], prefix: str) -> ModuleType:
    with _lock:
        module = _modules.get(key)
        if module is None:
            module = import_source(make(), prefix)
            _modules[key] = module
        return module


def layer_module(activation: str, dtype: str) -> ModuleType:
    """The layer kernels of ``activation`` in ``dtype`` (source:
    :func:`.layer_sources.layer_source`)."""
    row = activation_row(activation)
    # keyed by the row's formulas, not only its name
    key = ("layer", row.name, row.expr, row.derivative, dtype)
    from .layer_sources import layer_source

    return _cached(key, lambda: layer_source(activation, dtype), "mlp_accel_layer")


def output_module(loss: str, activation: str, dtype: str) -> ModuleType:
    """The output kernels of ``loss`` with ``activation`` (source:
    :func:`.layer_sources.output_source`)."""
    row = activation_row(activation)
    key = ("output", loss, row.name, row.expr, row.derivative, dtype)
    from .layer_sources import output_source

    return _cached(key, lambda: output_source(loss, activation, dtype), "mlp_accel_output")


def optimizer_module(rule: str, dtype: str) -> ModuleType:
    """The kernels of the optimizer table's rule ``rule`` in ``dtype`` (source:
    :func:`.optim_sources.optimizer_source`)."""
    from ...ops.optimizers import optimizer_row
    from .optim_sources import optimizer_source

    row = optimizer_row(rule)  # keyed by the row's formulas, not only its name
    return _cached(
        ("optimizer", row, dtype), lambda: optimizer_source(rule, dtype), "mlp_accel_optim"
    )


# -- SGD and Adam (in place; 1-D or 2-D of any layout) ---------------------------------------
# ``p.ndim`` of an argument is a compile-time constant to Numba, so each branch below is
# compiled only for the arrays it can take; rows of a 2-D array are 1-D views.
@_jit
def _sgd_rows(p, g, lr):
    for i in range(p.shape[0]):
        p[i] -= lr * g[i]


@_jit
def sgd_update(p, g, lr):
    """``p -= lr * g``."""
    lr = np.array((lr,)).astype(p.dtype)[0]
    if p.ndim == 1:
        _sgd_rows(p, g, lr)
    else:
        for r in range(p.shape[0]):
            _sgd_rows(p[r], g[r], lr)


@_jit
def _momentum_rows(p, g, v, lr, momentum, nesterov):
    for i in range(p.shape[0]):
        vi = momentum * v[i] + g[i]
        v[i] = vi
        if nesterov:
            p[i] -= lr * (g[i] + momentum * vi)
        else:
            p[i] -= lr * vi


@_jit
def sgd_momentum_update(p, g, v, lr, momentum, nesterov):
    """``v = momentum v + g``; ``p -= lr (g + momentum v)`` (Nesterov) or ``lr v``."""
    k = np.array((lr, momentum)).astype(p.dtype)
    lr, momentum = k[0], k[1]
    if p.ndim == 1:
        _momentum_rows(p, g, v, lr, momentum, nesterov)
    else:
        for r in range(p.shape[0]):
            _momentum_rows(p[r], g[r], v[r], lr, momentum, nesterov)


@_jit
def _adam_rows(p, g, m, v, lr, beta1, beta2, eps, c1, c2, rest1, rest2):
    for i in range(p.shape[0]):
        gi = g[i]
        mi = beta1 * m[i] + rest1 * gi
        vi = beta2 * v[i] + rest2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / c1) / (math.sqrt(vi / c2) + eps)


@_jit
def adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """Adam in PyTorch's form with bias corrections ``c1 = 1 - beta1**t``, ``c2``."""
    k = np.array((lr, beta1, beta2, eps, c1, c2, 1.0 - beta1, 1.0 - beta2)).astype(p.dtype)
    lr, beta1, beta2, eps, c1, c2, rest1, rest2 = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
    if p.ndim == 1:
        _adam_rows(p, g, m, v, lr, beta1, beta2, eps, c1, c2, rest1, rest2)
    else:
        for r in range(p.shape[0]):
            _adam_rows(p[r], g[r], m[r], v[r], lr, beta1, beta2, eps, c1, c2, rest1, rest2)


#: Hook name -> kernel.
KERNELS = {
    "sgd_update": sgd_update,
    "sgd_momentum_update": sgd_momentum_update,
    "adam_update": adam_update,
}
