"""A whole-network kernel for narrow networks that does not depend on the widths or depth.

The specialized kernel of :mod:`.fused` is generated for one exact width tuple and
takes seconds to compile, so every new shape would run its first seconds (or all of a short
job) on the slower per-layer path. The kernel written here takes the shape as data instead:

- the parameters ``[W1, b1, W2, b2, ...]`` packed in one flat vector (the order of
  :func:`~mlp_accel.ops.layout.param_layout`), with a table of their offsets;
- the layer widths, and one activation code per hidden layer (an index into the module's
  tuple :data:`HIDDEN` of elementwise activations).

The compiled code depends only on the dtype, the set of activations it can branch to and the
output layer's (loss, activation), which are rendered from the math table
(:mod:`mlp_accel.ops.table`) exactly as in the specialized kernel (the output loss and its
gradient come from the same emitters). So it is compiled once per
:func:`generic_key` (for the default networks: once per machine, like the per-layer kernels)
and serves every depth and every width up to :data:`~.paths.MAX_WIDTH`.

Samples go through in blocks of :data:`BLOCK` lanes held unit by unit (unit ``j`` of a
block is ``BLOCK`` consecutive elements of one working array), so every innermost loop runs
over the lanes with a constant trip count and vectorizes, whatever the widths; a block's
activations stay in the L1/L2 cache. Gradients are reduced over the lanes of each block.
Every kernel is serial and ``nogil``: a batch is parallelized above the kernel, in fixed
chunks of rows run on the package's worker threads (``backends/_chunks.py``).
"""

from __future__ import annotations

import threading
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from ...ops.layout import param_layout
from ...ops.table import ACTIVATION_ROWS, activation_row, loss_row
from ..base import NetworkSpec
from .fused import supports
from .kernels import (
    Writer,
    emit_softmax,
    import_source,
    module_header,
    render_activation,
    render_derivative,
)
from .output import emit_element_output, emit_softmax_output
from .paths import generic_key, generic_title

__all__ = [
    "supports",
    "generic_key",
    "generate_source",
    "load_module",
]

#: nogil: the package's worker threads run chunks of a batch side by side.
_SERIAL = "@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model='numpy')"

#: Lanes per block, by dtype: 512 bytes per unit. Measured (serial, float32, 2-core AMD EPYC
#: with AVX2, step time relative to 64 lanes): 32 lanes 1.6-3.4x slower (LLVM unrolls a
#: 32-trip loop fully before it vectorizes, and the scalar code stays), 128 lanes 0.75-1.0x,
#: 256 lanes no better; float64 likewise (32: 1.6-3.8x, 64 and 128 alike). A block of the
#: widest network (x, y, and z, a, dz of every 64-wide layer) stays within the L2 cache.
_BLOCK = {"float32": 128, "float64": 64}

_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}


def _hidden(activations: tuple[str, ...]) -> tuple[str, ...]:
    """The activations a hidden layer may branch to: the elementwise ones of the set."""
    return tuple(a for a in activations if ACTIVATION_ROWS[a].elementwise)


def _output(loss: str, activation: str) -> SimpleNamespace:
    """The output layer as the specialized kernel's emitters read it (from a spec): its loss,
    its activation and, as the source text of the runtime variable, its width."""
    return SimpleNamespace(widths=("dL",), activations=(activation,), loss=loss)


def _emit_branches(w: Writer, hidden: tuple[str, ...], body: Any) -> None:
    """``if c == 0: ... elif c == 1: ...`` over the hidden activations (the identity needs
    no code either way: its activation is its pre-activation and its derivative is one)."""
    first = True
    for code, name in enumerate(hidden):
        if name == "identity":
            continue
        w(f"{'if' if first else 'elif'} c == {code}:  # {name}")
        first = False
        with w.indent():
            body(activation_row(name))


def _emit_offsets(w: Writer) -> None:
    """Working-array offsets of the block: ``x`` (= ``a_0``), ``y``, and per layer ``z``,
    ``a`` (= ``z`` for the identity and the output layer) and ``dz``."""
    w("L = widths.shape[0] - 1")
    w("zo = np.zeros(L + 1, np.int64)")
    w("ao = np.zeros(L + 1, np.int64)")
    w("go = np.zeros(L + 1, np.int64)")
    w("size = widths[0]")
    w("yo = size")
    w("size += widths[L]")
    w("for k in range(1, L + 1):")
    with w.indent():
        w("zo[k] = size")
        w("size += widths[k]")
        w(f"if k == L or codes[k - 1] == {_IDENTITY}:")
        w("    ao[k] = zo[k]")
        w("else:")
        w("    ao[k] = size")
        w("    size += widths[k]")
        w("go[k] = size")
        w("size += widths[k]")
    w("S = np.zeros((size, BLOCK), dtype=DT)")


#: Placeholder replaced by the identity's code in each module (see :func:`generate_source`).
_IDENTITY = "IDENTITY"


def _emit_load(w: Writer, with_targets: bool) -> None:
    """Copy rows ``r .. r + m`` of ``X`` (and ``Y``) into the block, transposed; zero the
    padding lanes of a last, partial block."""
    w("m = min(BLOCK, hi - r)")
    w("if m < BLOCK:")
    with w.indent():
        w("for i in range(d0):")
        w("    for s in range(BLOCK):")
        w("        S[i, s] = _0")
        if with_targets:
            w("for k in range(dL):")
            w("    for s in range(BLOCK):")
            w("        S[yo + k, s] = _0")
    w("for s in range(m):")
    with w.indent():
        w("for i in range(d0):")
        w("    S[i, s] = X[r + s, i]")
        if with_targets:
            w("for k in range(dL):")
            w("    S[yo + k, s] = Y[r + s, k]")


def _emit_forward(w: Writer, hidden: tuple[str, ...]) -> None:
    """``z_k = a_{k-1} W_k + b_k`` unit by unit, then ``a_k = f_k(z_k)`` over the layer's
    whole region (one branch per layer); the output layer stays logits."""
    w("for k in range(1, L + 1):")
    with w.indent():
        w("din = widths[k - 1]")
        w("dout = widths[k]")
        w("wo = poff[2 * k - 2]")
        w("bo = poff[2 * k - 1]")
        w("zk = zo[k]")
        w("ap = ao[k - 1]")
        w("for j in range(dout):")
        with w.indent():
            w("zj = zk + j")
            w("bj = P[bo + j]")
            w("for s in range(BLOCK):")
            w("    S[zj, s] = bj")
            w("for i in range(din):")
            with w.indent():
                w("wij = P[wo + i * dout + j]")
                w("ai = ap + i")
                w("for s in range(BLOCK):")
                w("    S[zj, s] += wij * S[ai, s]")
        w("if k < L:")
        with w.indent():
            w("c = codes[k - 1]")
            w("ak = ao[k]")

            def body(row: Any) -> None:
                expr = render_activation(row, "v", w.consts)
                w("for j in range(dout):")
                w("    for s in range(BLOCK):")
                w("        v = S[zk + j, s]")
                w(f"        S[ak + j, s] = {expr}")

            _emit_branches(w, hidden, body)


def _emit_output(w: Writer, out: SimpleNamespace) -> None:
    """Loss of the block's ``m`` valid lanes into ``lsum``; the output dz (0 in padding)."""
    if out.activations[-1] == "softmax":
        w("for s in range(BLOCK):")
        with w.indent():
            emit_softmax_output(
                w,
                out,
                lambda k: f"S[zL + {k}, s]",
                lambda k: f"S[yo + {k}, s]",
                lambda k: f"S[gL + {k}, s]",
            )
            w("if s < m:")
            w("    lsum += lrow")
            w("else:")
            w("    for k in range(dL):")
            w("        S[gL + k, s] = _0")
        return
    w("for k in range(dL):")
    with w.indent():
        w("for s in range(BLOCK):")
        with w.indent():
            w("v = S[zL + k, s]")
            w("yk = S[yo + k, s]")
            w("ok = s < m")
            emit_element_output(w, out)
            w("S[gL + k, s] = g if ok else _0")
            w("if ok:")
            w("    lsum += lv")


def _emit_backward(w: Writer, hidden: tuple[str, ...]) -> None:
    """Add the block's dW, db of every layer into ``G``; carry dz down through ``W_k`` and
    the derivative of the layer below (one branch per layer)."""
    w("for k in range(L, 0, -1):")
    with w.indent():
        w("din = widths[k - 1]")
        w("dout = widths[k]")
        w("wo = poff[2 * k - 2]")
        w("bo = poff[2 * k - 1]")
        w("gk = go[k]")
        w("ap = ao[k - 1]")
        w("for i in range(din):")
        with w.indent():
            w("ai = ap + i")
            w("for j in range(dout):")
            with w.indent():
                w("gj = gk + j")
                w("acc = _0")
                w("for s in range(BLOCK):")
                w("    acc += S[ai, s] * S[gj, s]")
                w("G[wo + i * dout + j] += acc")
        w("for j in range(dout):")
        with w.indent():
            w("gj = gk + j")
            w("acc = _0")
            w("for s in range(BLOCK):")
            w("    acc += S[gj, s]")
            w("G[bo + j] += acc")
        w("if k == 1:")
        w("    break")
        w("gb = go[k - 1]")
        w("for i in range(din):")
        with w.indent():
            w("gi = gb + i")
            w("for s in range(BLOCK):")
            w("    S[gi, s] = _0")
            w("for j in range(dout):")
            with w.indent():
                w("wij = P[wo + i * dout + j]")
                w("gj = gk + j")
                w("for s in range(BLOCK):")
                w("    S[gi, s] += wij * S[gj, s]")
        w("c = codes[k - 2]")
        w("zb = zo[k - 1]")
        w("ab = ao[k - 1]")

        def body(row: Any) -> None:
            der = render_derivative(row, "S[zb + i, s]", "S[ab + i, s]", w.consts)
            w("for i in range(din):")
            w("    for s in range(BLOCK):")
            w(f"        S[gb + i, s] *= {der}")

        _emit_branches(w, hidden, body)


def _emit_chunks(w: Writer, hidden: tuple[str, ...], out: SimpleNamespace) -> None:
    w("")
    w("")
    w(_SERIAL)
    w("def train_chunk(X, Y, P, widths, poff, codes, lo, hi, sc, G):")
    with w.indent():
        w('"""Loss sum of rows [lo, hi); their gradients are added into ``G``."""')
        _emit_offsets(w)
        w("d0 = widths[0]")
        w("dL = widths[L]")
        w("zL = zo[L]")
        w("gL = go[L]")
        w("lsum = 0.0")
        w("for r in range(lo, hi, BLOCK):")
        with w.indent():
            _emit_load(w, with_targets=True)
            _emit_forward(w, hidden)
            _emit_output(w, out)
            _emit_backward(w, hidden)
        w("return lsum")
    w("")
    w("")
    w(_SERIAL)
    w("def forward_chunk(X, P, widths, poff, codes, lo, hi, out):")
    with w.indent():
        w('"""Outputs of rows [lo, hi) into ``out``."""')
        _emit_offsets(w)
        w("d0 = widths[0]")
        w("dL = widths[L]")
        w("zL = zo[L]")
        w("for r in range(lo, hi, BLOCK):")
        with w.indent():
            _emit_load(w, with_targets=False)
            _emit_forward(w, hidden)
            if out.activations[-1] == "softmax":
                w("for s in range(m):")
                with w.indent():
                    lane = lambda k: f"S[zL + {k}, s]"  # noqa: E731
                    emit_softmax(w, "dL", lane, lane, "_exp_neg")
                    w("for k in range(dL):")
                    w("    out[r + s, k] = S[zL + k, s]")
            else:
                expr = render_activation(
                    activation_row(out.activations[-1]), "S[zL + k, s]", w.consts
                )
                w("for s in range(m):")
                w("    for k in range(dL):")
                w(f"        out[r + s, k] = {expr}")


def _emit_entry_points(w: Writer) -> None:
    args = "P, widths, poff, codes"
    w("")
    w("")
    w(_SERIAL)
    w(f"def train(X, Y, {args}, scale):")
    with w.indent():
        w("n = X.shape[0]")
        w("G = np.zeros(P.shape[0], dtype=DT)")
        # n - n, not 0: a literal 0 would compile train_chunk a second time
        w(f"lsum = train_chunk(X, Y, {args}, n - n, n, DT(scale), G)")
        w("return lsum, G")
    w("")
    w("")
    w(_SERIAL)
    w(f"def forward(X, {args}):")
    with w.indent():
        w("n = X.shape[0]")
        w("out = np.empty((n, widths[widths.shape[0] - 1]), dtype=DT)")
        w(f"forward_chunk(X, {args}, n - n, n, out)")
        w("return out")


def generate_source(key: tuple[str, tuple[str, ...], str, str]) -> str:
    """Python source of the generic train and forward kernels of ``key`` (see
    :func:`generic_key`).

    Raises
    ------
    ValueError
        If the dtype, loss or an activation is unknown, or the loss requires another output
        activation.
    """
    dtype, activations, loss, output = key
    if dtype not in _BLOCK:
        raise ValueError(f"the generic fused kernel supports float32 and float64, got {dtype!r}")
    lrow = loss_row(loss)
    for name in activations:
        activation_row(name)  # an unknown name raises, listing the valid ones
    if output not in activations:
        raise ValueError(f"output activation {output!r} is not among {list(activations)}")
    if lrow.requires not in (None, output):
        raise ValueError(f"loss {loss!r} requires the {lrow.requires!r} output activation")
    hidden = _hidden(activations)
    w = Writer()
    _emit_chunks(w, hidden, _output(loss, output))
    _emit_entry_points(w)
    code = str(hidden.index("identity")) if "identity" in hidden else "-1"
    lines = [line.replace(_IDENTITY, code) for line in w.lines]
    title = generic_title(dtype, activations, loss, output)
    header = module_header(title, dtype, w.consts)
    header.insert(1, f"BLOCK = {_BLOCK[dtype]}")
    header.insert(2, f"HIDDEN = {hidden!r}")
    return "\n".join(header + lines) + "\n"


def load_module(key: tuple[str, tuple[str, ...], str, str]) -> ModuleType:
    """The generated module of ``key``: from memory, else written to the cache directory
    and imported (its file name is a hash of the source, so Numba's disk cache of it stays
    valid across processes and a changed generator never reuses stale code)."""
    dtype, activations, loss, output = key
    # keyed by the rows' formulas too, not only their names (registered activations)
    rows = tuple((a, activation_row(a).expr, activation_row(a).derivative) for a in activations)
    memo = (dtype, rows, loss, output)
    with _lock:
        module = _modules.get(memo)
        if module is None:
            module = import_source(generate_source(key), "mlp_accel_generic")
            _modules[memo] = module
        return module


def shape_tables(spec: NetworkSpec, hidden: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """The runtime description of ``spec``'s shape: widths, the flat offsets of
    ``[W1, b1, ...]`` and one activation code per layer (an index into ``hidden``; the
    output layer's is -1, unused)."""
    widths = np.asarray(spec.widths, dtype=np.int64)
    offsets = np.asarray([s.offset for s in param_layout(spec.widths)], dtype=np.int64)
    codes = [hidden.index(a) for a in spec.activations[:-1]] + [-1]
    return widths, offsets, np.asarray(codes, dtype=np.int64)


def sample_arguments(key: tuple[str, tuple[str, ...], str, str]) -> tuple[Any, Any, Any, tuple]:
    """``(X, Y, P, tables)`` of three rows of a small network of ``key``: arguments with the
    types every call passes, which compile (or load) the kernels for all shapes."""
    dtype, _, loss, output = key
    spec = NetworkSpec((2, 3, 2), ("identity", output), loss, dtype)
    rng = np.random.default_rng(0)
    P = np.asarray(rng.standard_normal(param_layout(spec.widths)[-1].end), dtype)
    X = np.zeros((3, 2), dtype)
    Y = np.zeros((3, 2), dtype)
    return X, Y, P, shape_tables(spec, load_module(key).HIDDEN)
