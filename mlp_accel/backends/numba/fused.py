"""The network kernel specialized on one shape, for the smallest networks.

For a network of at most :data:`~.paths.UNROLL_LIMIT` weights (every layer at most
:data:`MAX_WIDTH` wide), this module writes the source of two kernels specialized on its exact
widths, activations, loss and dtype, unrolled into scalar code per sample that keeps the whole
network in registers (:mod:`.unrolled`):

- ``train(X, Y, W1, b1, ..., scale, nl) -> (loss_sum, dW1, db1, ...)``: forward, loss and
  backward for every sample of ``X``;
- ``forward(X, W1, b1, ..., nl) -> outputs``.

Both are serial and ``nogil``: a batch is parallelized above them, in fixed chunks of rows
run on the package's worker threads (``backends/_chunks.py``). Larger narrow networks run
the generic network kernel (:mod:`.generic`), which was as fast or faster than a kernel
specialized on their shape on every shape measured.

The activations, derivatives and losses are rendered from the rows of the math table
(:mod:`mlp_accel.ops.table`), the same rows the generic path evaluates, so any built-in or
registered activation is fused: losses from logits, ``dz = (yhat - y) * scale`` for matched
pairs, the chain rule otherwise.

Generated modules are written to a cache directory (:func:`cache_dir`) and imported from
there, so Numba's ``cache=True`` keeps their machine code on disk between processes.
"""

from __future__ import annotations

import threading
from types import ModuleType

from ...ops.layout import n_parameters
from ...ops.table import activation_row
from ..base import NetworkSpec
from .kernels import (
    Writer,
    cache_dir,
    import_source,
    module_header,
)

__all__ = ["MAX_WIDTH", "supports", "generate_source", "load_module", "cache_dir"]

from .paths import MAX_WIDTH, fused_supports, unrolled


def supports(spec: NetworkSpec) -> bool:
    """Whether a kernel specialized on ``spec`` is generated: the smallest narrow networks."""
    return fused_supports(spec) and unrolled(spec)


_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}


#: Rows per block of the unrolled per-sample kernel (:mod:`.unrolled`).
_UNROLLED_ROWS = 256


def _shaped_return(w: Writer, spec: NetworkSpec, loss: str) -> None:
    """Return ``(loss, dW1, db1, ...)``: the flat ``grads`` copied into parameter shapes.

    Shaped arrays made here cost the caller nothing, where slicing and reshaping the flat
    vector in Python would take a microsecond per parameter.
    """
    d, q, names = spec.widths, 0, []
    for k in range(1, len(d)):
        w(f"gW{k} = np.empty(({d[k - 1]}, {d[k]}), dtype=DT)")
        w(f"for i in range({d[k - 1]}):")
        w(f"    for j in range({d[k]}):")
        w(f"        gW{k}[i, j] = grads[{q} + i * {d[k]} + j]")
        q += d[k - 1] * d[k]
        w(f"gb{k} = grads[{q}:{q + d[k]}].copy()")
        q += d[k]
        names += [f"gW{k}", f"gb{k}"]
    w(f"return {loss}, {', '.join(names)}")


def generate_source(spec: NetworkSpec) -> str:
    """Python source of the train and forward kernels specialized on ``spec``."""
    if not supports(spec):
        raise ValueError(f"no specialized network kernel for {spec} (too wide or too large)")
    L, dL = len(spec.widths) - 1, spec.widths[-1]
    params = ", ".join(f"W{k}, b{k}" for k in range(1, L + 1))
    w = Writer()
    # error_model="numpy": a float division needs no zero check, so loops with one vectorize
    # nogil: the package's worker threads run chunks of a batch side by side
    serial = "@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model='numpy')"
    P = n_parameters(spec.widths)
    from . import unrolled

    unrolled.scalar_chunks(w, spec, serial)
    w("")
    w("")
    w(serial)
    w(f"def train(X, Y, {params}, scale, nl):")
    with w.indent():
        # n - n, not 0: a literal 0 would compile train_chunk a second time
        w("n = X.shape[0]")
        w(f"grads = np.zeros({P}, dtype=DT)")
        w(f"lsum = train_chunk(X, Y, {params}, n - n, n, DT(scale), grads, nl)")
        _shaped_return(w, spec, "lsum")
    w("")
    w("")
    w(serial)
    w(f"def forward(X, {params}, nl):")
    with w.indent():
        w("n = X.shape[0]")
        w(f"out = np.empty((n, {dL}), dtype=DT)")
        w(f"forward_chunk(X, {params}, n - n, n, out, nl)")
        w("return out")
    # The header comes last: it defines the typed constants the rendered expressions used.
    header = module_header(str(spec), spec.dtype, w.consts)
    header.insert(1, f"BLOCK = {_UNROLLED_ROWS}")  # rows per block of the unrolled kernel
    return "\n".join(header + w.lines) + "\n"


def load_module(spec: NetworkSpec) -> ModuleType:
    """The generated kernel module for ``spec``: from memory, else written and imported.

    The file name is a hash of the source, so a changed generator never reuses stale code,
    and Numba's on-disk cache (keyed by the file) stays valid across processes.
    """
    # keyed by the rows' formulas too, not only their names
    names = spec.activations
    rows = tuple((a, activation_row(a).expr, activation_row(a).derivative) for a in names)
    key = (spec.widths, rows, spec.loss, spec.dtype)
    with _lock:
        module = _modules.get(key)
        if module is not None:
            return module
        module = import_source(generate_source(spec), "mlp_accel_fused")
        _modules[key] = module
        return module
