"""Whole-network kernels for narrow networks, generated per network shape.

For a network whose layers are all narrow (at most :data:`MAX_WIDTH` wide) the per-layer
hooks spend their time on n-by-width temporaries and calls, not arithmetic. This module
writes the source of two kernels specialized on the exact widths, activations, loss and
dtype of one :class:`~mlp_accel.backends.base.NetworkSpec`:

- ``train(X, Y, W1, b1, ..., scale, nl) -> (loss_sum, dW1, db1, ...)``: forward, loss and
  backward for every sample of ``X``;
- ``forward(X, W1, b1, ..., nl) -> outputs``.

Both are serial and ``nogil``: a batch is parallelized above them, in fixed chunks of rows
run on the package's worker threads (``backends/_chunks.py``).

Samples are processed in blocks of :func:`block_size` lanes. All working memory of a thread
(a copy of the weights, the activations of one block, the gradient accumulators) lives in
one flat array addressed with compile-time constant offsets, and every innermost loop runs
over the lanes of a block with a constant trip count: LLVM unrolls the layer loops, proves
that no two regions overlap, and vectorizes across samples. The batch is read once and no
n-by-width array is written.

The activations, derivatives and losses are rendered from the rows of the math table
(:mod:`mlp_accel.ops.table`), the same rows the generic path evaluates, so any built-in or
registered activation is fused: losses from logits, ``dz = (yhat - y) * scale`` for matched
pairs, the chain rule otherwise. The output loss and gradient are emitted by one function
(:func:`emit_element_output`, :func:`emit_softmax_output`) for both kernel strategies.

Generated modules are written to a cache directory (:func:`cache_dir`) and imported from
there, so Numba's ``cache=True`` keeps their machine code on disk between processes.
"""

from __future__ import annotations

import threading
from types import ModuleType

from ...ops.layout import n_parameters, param_layout
from ...ops.table import activation_row
from ..base import NetworkSpec
from .kernels import (
    Writer,
    cache_dir,
    emit_softmax,
    import_source,
    module_header,
)
from .output import act as _act
from .output import der as _der
from .output import emit_element_output, emit_softmax_output

__all__ = ["MAX_WIDTH", "supports", "generate_source", "load_module", "cache_dir"]

from .paths import MAX_WIDTH
from .paths import fused_supports as supports
from .paths import unrolled as _unrolled

#: Lane accumulators (one gradient copy per lane) are kept while they stay this small
#: (elements); beyond it each block's lanes are summed into one gradient copy.
_LANE_ACCUMULATOR_LIMIT = 8192

_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}


def block_size(dtype: str) -> int:
    """Samples per block: two 512-bit vectors of lanes, a multiple of any narrower vector."""
    return 32 if dtype == "float32" else 16


class _Layout:
    """Constant offsets of every region in a thread's flat working array."""

    def __init__(self, spec: NetworkSpec, lanes: int) -> None:
        d = spec.widths
        self.widths = d
        self.n_layers = len(d) - 1
        self.lanes = lanes
        self.n_params = n_parameters(d)
        self.lane_accumulators = self.n_params * lanes <= _LANE_ACCUMULATOR_LIMIT
        size = 0

        def take(count: int) -> int:
            nonlocal size
            start = size
            size += count
            return start

        # Weights, then gradients in the same order: [W1, b1, W2, b2, ...] row-major.
        self.weight = [0] * (self.n_layers + 1)
        self.bias = [0] * (self.n_layers + 1)
        self.param_offset = [0] * (self.n_layers + 1)  # offset in the flat gradient vector
        slots = param_layout(d)
        for k in range(1, self.n_layers + 1):
            self.weight[k] = take(slots[2 * k - 2].size)
            self.bias[k] = take(slots[2 * k - 1].size)
            self.param_offset[k] = slots[2 * k - 2].offset
        copies = lanes if self.lane_accumulators else 1
        self.grad = take(self.n_params * copies)
        self.grad_copies = copies
        self.x = take(d[0] * lanes)
        self.y = take(d[-1] * lanes)
        self.z = [0] * (self.n_layers + 1)
        self.a = [0] * (self.n_layers + 1)
        self.dz = [0] * (self.n_layers + 1)
        self.a[0] = self.x
        for k in range(1, self.n_layers + 1):
            self.z[k] = take(d[k] * lanes)
            act = spec.activations[k - 1]
            is_output = k == self.n_layers
            self.a[k] = self.z[k] if act == "identity" or is_output else take(d[k] * lanes)
            self.dz[k] = take(d[k] * lanes)
        self.size = size


def _copy_weights(w: Writer, lay: _Layout) -> None:
    d = lay.widths
    for k in range(1, lay.n_layers + 1):
        w(f"for i in range({d[k - 1]}):")
        with w.indent():
            w(f"for j in range({d[k]}):")
            w(f"    S[{lay.weight[k]} + i * {d[k]} + j] = W{k}[i, j]")
        w(f"for j in range({d[k]}):")
        w(f"    S[{lay.bias[k]} + j] = b{k}[j]")


def _load_block(w: Writer, lay: _Layout, with_targets: bool) -> None:
    B, d0, dL = lay.lanes, lay.widths[0], lay.widths[-1]
    w(f"m = min({B}, hi - r)")
    w(f"if m < {B}:")
    with w.indent():
        w(f"for q in range({d0 * B}):")
        w(f"    S[{lay.x} + q] = _0")
        if with_targets:
            w(f"for q in range({dL * B}):")
            w(f"    S[{lay.y} + q] = _0")
    w("for s in range(m):")
    with w.indent():
        w(f"for i in range({d0}):")
        w(f"    S[{lay.x} + i * {B} + s] = X[r + s, i]")
        if with_targets:
            w(f"for k in range({dL}):")
            w(f"    S[{lay.y} + k * {B} + s] = Y[r + s, k]")


def _forward_layers(w: Writer, lay: _Layout, activations: tuple[str, ...]) -> None:
    """z_k = a_{k-1} W_k + b_k and a_k = f_k(z_k), lane by lane; the output stays logits."""
    B, d = lay.lanes, lay.widths
    for k in range(1, lay.n_layers + 1):
        zo, ai, wo, bo = lay.z[k], lay.a[k - 1], lay.weight[k], lay.bias[k]
        w(f"for j in range({d[k]}):")
        with w.indent():
            w(f"bj = S[{bo} + j]")
            w("for s in range(nl):")
            w(f"    S[{zo} + j * {B} + s] = bj")
            w(f"for i in range({d[k - 1]}):")
            with w.indent():
                w(f"wij = S[{wo} + i * {d[k]} + j]")
                w("for s in range(nl):")
                w(f"    S[{zo} + j * {B} + s] += wij * S[{ai} + i * {B} + s]")
            if k < lay.n_layers and lay.a[k] != lay.z[k]:
                expr = _act(w, activations[k - 1], "v")
                w("for s in range(nl):")
                w(f"    v = S[{zo} + j * {B} + s]")
                w(f"    S[{lay.a[k]} + j * {B} + s] = {expr}")


def _output_gradient(w: Writer, lay: _Layout, spec: NetworkSpec) -> None:
    """Loss of the block's valid lanes into ``lsum``; dz of the output layer (0 in padding)."""
    B, dL, L = lay.lanes, lay.widths[-1], lay.n_layers
    zo, yo, go = lay.z[L], lay.y, lay.dz[L]
    if spec.activations[-1] == "softmax":
        w("for s in range(nl):")
        with w.indent():
            emit_softmax_output(
                w,
                spec,
                lambda k: f"S[{zo} + {k} * {B} + s]",
                lambda k: f"S[{yo} + {k} * {B} + s]",
                lambda k: f"S[{go} + {k} * {B} + s]",
            )
            w("if s < m:")
            w("    lsum += lrow")
            w("else:")
            w(f"    for k in range({dL}):")
            w(f"        S[{go} + k * {B} + s] = _0")
        return
    w(f"for k in range({dL}):")
    with w.indent():
        w("for s in range(nl):")
        with w.indent():
            w(f"v = S[{zo} + k * {B} + s]")
            w(f"yk = S[{yo} + k * {B} + s]")
            w("ok = s < m")
            emit_element_output(w, spec)
            w(f"S[{go} + k * {B} + s] = g if ok else _0")
            w("if ok:")
            w("    lsum += lv")


def _backward_layers(w: Writer, lay: _Layout, activations: tuple[str, ...]) -> None:
    """Accumulate dW, db of every layer and carry dz down, lane by lane."""
    B, d = lay.lanes, lay.widths
    for k in range(lay.n_layers, 0, -1):
        go, ai = lay.dz[k], lay.a[k - 1]
        gw = lay.grad + lay.param_offset[k] * lay.grad_copies
        gb = gw + d[k - 1] * d[k] * lay.grad_copies
        w(f"for i in range({d[k - 1]}):")
        with w.indent():
            w(f"for j in range({d[k]}):")
            with w.indent():
                if lay.lane_accumulators:
                    term = f"S[{ai} + i * {B} + s] * S[{go} + j * {B} + s]"
                    w("for s in range(nl):")
                    w(f"    S[{gw} + (i * {d[k]} + j) * {B} + s] += {term}")
                else:
                    w("acc = _0")
                    w("for s in range(nl):")
                    w(f"    acc += S[{ai} + i * {B} + s] * S[{go} + j * {B} + s]")
                    w(f"S[{gw} + i * {d[k]} + j] += acc")
        w(f"for j in range({d[k]}):")
        with w.indent():
            if lay.lane_accumulators:
                w("for s in range(nl):")
                w(f"    S[{gb} + j * {B} + s] += S[{go} + j * {B} + s]")
            else:
                w("acc = _0")
                w("for s in range(nl):")
                w(f"    acc += S[{go} + j * {B} + s]")
                w(f"S[{gb} + j] += acc")
        if k == 1:
            continue
        below, wo = lay.dz[k - 1], lay.weight[k]
        w(f"for i in range({d[k - 1]}):")
        with w.indent():
            w("for s in range(nl):")
            w(f"    S[{below} + i * {B} + s] = _0")
            w(f"for j in range({d[k]}):")
            with w.indent():
                w(f"wij = S[{wo} + i * {d[k]} + j]")
                w("for s in range(nl):")
                w(f"    S[{below} + i * {B} + s] += wij * S[{go} + j * {B} + s]")
            act = activations[k - 2]
            if act != "identity":
                zb, ab = lay.z[k - 1], lay.a[k - 1]
                deriv = _der(w, act, f"S[{zb} + i * {B} + s]", f"S[{ab} + i * {B} + s]")
                w("for s in range(nl):")
                w(f"    S[{below} + i * {B} + s] *= {deriv}")


#: Rows per block of the unrolled per-sample kernel (:mod:`.unrolled`).
_UNROLLED_ROWS = 256


def _lane_chunks(w: Writer, spec: NetworkSpec, serial: str) -> None:
    """``train_chunk``/``forward_chunk`` over blocks of ``nl`` lanes in a flat array."""
    lay = _Layout(spec, block_size(spec.dtype))
    L, B, dL, P = lay.n_layers, lay.lanes, lay.widths[-1], lay.n_params
    params = ", ".join(f"W{k}, b{k}" for k in range(1, L + 1))
    w("")
    w("")
    w(serial)
    w(f"def train_chunk(X, Y, {params}, lo, hi, sc, grads, nl):")
    with w.indent():
        w('"""Loss sum of rows [lo, hi); their gradients are added into ``grads``."""')
        w(f"S = np.zeros({lay.size}, dtype=DT)")
        _copy_weights(w, lay)
        w("lsum = 0.0")
        w(f"for r in range(lo, hi, {B}):")
        with w.indent():
            _load_block(w, lay, with_targets=True)
            _forward_layers(w, lay, spec.activations)
            _output_gradient(w, lay, spec)
            _backward_layers(w, lay, spec.activations)
        if lay.lane_accumulators:
            w(f"for q in range({P}):")
            with w.indent():
                w("acc = _0")
                w("for s in range(nl):")
                w(f"    acc += S[{lay.grad} + q * {B} + s]")
                w("grads[q] += acc")
        else:
            w(f"for q in range({P}):")
            w(f"    grads[q] += S[{lay.grad} + q]")
        w("return lsum")
    w("")
    w("")
    w(serial)
    w(f"def forward_chunk(X, {params}, lo, hi, out, nl):")
    with w.indent():
        w('"""Outputs of rows [lo, hi) into ``out``."""')
        w(f"S = np.zeros({lay.size}, dtype=DT)")
        _copy_weights(w, lay)
        w(f"for r in range(lo, hi, {B}):")
        with w.indent():
            _load_block(w, lay, with_targets=False)
            _forward_layers(w, lay, spec.activations)
            zo = lay.z[L]
            if spec.activations[-1] == "softmax":
                w("for s in range(m):")
                with w.indent():
                    lane = lambda k: f"S[{zo} + {k} * {B} + s]"  # noqa: E731
                    emit_softmax(w, str(dL), lane, lane, "_exp_neg")
                    w(f"for k in range({dL}):")
                    w(f"    out[r + s, k] = S[{zo} + k * {B} + s]")
            else:
                expr = _act(w, spec.activations[-1], f"S[{zo} + k * {B} + s]")
                w("for s in range(m):")
                w(f"    for k in range({dL}):")
                w(f"        out[r + s, k] = {expr}")


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
        raise ValueError(f"no fused small-network kernel for {spec}")
    lay = _Layout(spec, block_size(spec.dtype))
    L, dL = lay.n_layers, lay.widths[-1]
    params = ", ".join(f"W{k}, b{k}" for k in range(1, L + 1))
    w = Writer()
    # error_model="numpy": a float division needs no zero check, so loops with one vectorize
    # nogil: the package's worker threads run chunks of a batch side by side
    serial = "@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model='numpy')"
    P = lay.n_params
    if _unrolled(spec):
        from . import unrolled

        unrolled.scalar_chunks(w, spec, serial)
    else:
        _lane_chunks(w, spec, serial)
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
    # rows per block of the unrolled kernel; lanes per block of the lane kernel
    header.insert(1, f"BLOCK = {_UNROLLED_ROWS if _unrolled(spec) else block_size(spec.dtype)}")
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
