"""Whole-network kernels for narrow networks, generated per network shape.

For a network whose layers are all narrow (at most :data:`MAX_WIDTH` wide) the per-layer
hooks spend their time on n-by-width temporaries and calls, not arithmetic. This module
writes the source of two kernels specialized on the exact widths, activations, loss and
dtype of one :class:`~mlp_accel.backends.base.NetworkSpec`:

- ``train_*(X, Y, W1, b1, ..., scale, chunks) -> (loss_sum, flat_grads)``: forward, loss and
  backward for every sample, accumulating the gradients per thread;
- ``forward_*(X, W1, b1, ...) -> outputs``.

Samples are processed in blocks of :func:`block_size` lanes. All working memory of a thread
(a copy of the weights, the activations of one block, the gradient accumulators) lives in
one flat array addressed with compile-time constant offsets, and every innermost loop runs
over the lanes of a block with a constant trip count: LLVM unrolls the layer loops, proves
that no two regions overlap, and vectorizes across samples. The batch is read once and no
n-by-width array is written.

The formulas are those of the generic path (``mlp_accel.activations``, ``mlp_accel.losses``):
losses from logits, ``dz = (yhat - y) * scale`` for matched pairs, the chain rule otherwise.

Generated modules are written to a cache directory (:func:`cache_dir`) and imported from
there, so Numba's ``cache=True`` keeps their machine code on disk between processes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

from ._numba_kernels import ACTIVATION_CODES, FASTMATH, LOSS_CODES
from .base import NetworkSpec

__all__ = ["MAX_WIDTH", "supports", "generate_source", "load_module", "cache_dir"]

#: Widest layer the fused small-network kernel is generated for.
MAX_WIDTH = 64

#: Lane accumulators (one gradient copy per lane) are kept while they stay this small
#: (elements); beyond it each block's lanes are summed into one gradient copy.
_LANE_ACCUMULATOR_LIMIT = 8192

_ELEMENTWISE = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")

# Expressions of the generic activations, over the generated module's typed constants
# (_0, _1, _HALF, _SLOPE have the network's dtype, so float32 stays float32). Comparisons
# are written so that a NaN propagates, as np.maximum does.
_ACTIVATE = {
    "identity": "{v}",
    "relu": "(_0 if {v} <= _0 else {v})",
    "leaky_relu": "({v} if {v} > _0 else {v} * _SLOPE)",
    "sigmoid": "_sigmoid({v})",
    "tanh": "math.tanh({v})",
}
_DERIVATIVE = {
    "relu": "(_1 if {z} > _0 else _0)",
    "leaky_relu": "(_1 if {z} > _0 else _SLOPE)",
    "sigmoid": "{a} * (_1 - {a})",
    "tanh": "(_1 - {a} * {a})",
}

_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}


def supports(spec: NetworkSpec) -> bool:
    """Whether a fused kernel can be generated for ``spec``."""
    if spec.dtype not in ("float32", "float64") or spec.loss not in LOSS_CODES:
        return False
    if len(spec.widths) < 2 or any(not 1 <= w <= MAX_WIDTH for w in spec.widths):
        return False
    *hidden, output = spec.activations
    if len(spec.activations) != len(spec.widths) - 1:
        return False
    if any(a not in _ELEMENTWISE for a in hidden) or output not in ACTIVATION_CODES:
        return False
    fused = {"binary_cross_entropy": "sigmoid", "cross_entropy": "softmax"}
    return spec.loss == "squared_error" or fused[spec.loss] == output


def block_size(dtype: str) -> int:
    """Samples per block: two 512-bit vectors of lanes, a multiple of any narrower vector."""
    return 32 if dtype == "float32" else 16


def cache_dir() -> Path:
    """Where generated kernel modules (and Numba's cache of them) are kept.

    ``$MLP_ACCEL_CACHE_DIR``, else ``$NUMBA_CACHE_DIR/mlp_accel``, else
    ``$XDG_CACHE_HOME/mlp_accel/numba`` (``~/.cache`` by default); a fresh temporary
    directory where none of these can be written.
    """
    if os.environ.get("MLP_ACCEL_CACHE_DIR"):
        candidates = [Path(os.environ["MLP_ACCEL_CACHE_DIR"])]
    elif os.environ.get("NUMBA_CACHE_DIR"):
        candidates = [Path(os.environ["NUMBA_CACHE_DIR"]) / "mlp_accel"]
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        candidates = [Path(base) / "mlp_accel" / "numba"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
            probe.close()
            return path
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="mlp_accel_numba_"))


class _Writer:
    """Indented source lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def indent(self) -> _Writer:
        self.depth += 1
        return self

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1


class _Layout:
    """Constant offsets of every region in a thread's flat working array."""

    def __init__(self, spec: NetworkSpec, lanes: int) -> None:
        d = spec.widths
        self.widths = d
        self.n_layers = len(d) - 1
        self.lanes = lanes
        self.n_params = sum(d[k] * d[k + 1] + d[k + 1] for k in range(self.n_layers))
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
        flat = 0
        for k in range(1, self.n_layers + 1):
            self.weight[k] = take(d[k - 1] * d[k])
            self.bias[k] = take(d[k])
            self.param_offset[k] = flat
            flat += d[k - 1] * d[k] + d[k]
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


def _copy_weights(w: _Writer, lay: _Layout) -> None:
    d = lay.widths
    for k in range(1, lay.n_layers + 1):
        w(f"for i in range({d[k - 1]}):")
        with w.indent():
            w(f"for j in range({d[k]}):")
            w(f"    S[{lay.weight[k]} + i * {d[k]} + j] = W{k}[i, j]")
        w(f"for j in range({d[k]}):")
        w(f"    S[{lay.bias[k]} + j] = b{k}[j]")


def _load_block(w: _Writer, lay: _Layout, with_targets: bool) -> None:
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


def _forward_layers(w: _Writer, lay: _Layout, activations: tuple[str, ...]) -> None:
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
                expr = _ACTIVATE[activations[k - 1]].format(v="v")
                w("for s in range(nl):")
                w(f"    v = S[{zo} + j * {B} + s]")
                w(f"    S[{lay.a[k]} + j * {B} + s] = {expr}")


def _softmax_lanes(w: _Writer, lay: _Layout, dest: int) -> None:
    """Row softmax of the output logits into ``dest`` (per lane); leaves ``top``, ``tot``."""
    B, dL, zo = lay.lanes, lay.widths[-1], lay.z[lay.n_layers]
    w(f"top = S[{zo} + s]")
    w(f"for k in range(1, {dL}):")
    w(f"    if S[{zo} + k * {B} + s] > top:")
    w(f"        top = S[{zo} + k * {B} + s]")
    w("tot = _0")
    w(f"for k in range({dL}):")
    w(f"    e = _exp_neg(S[{zo} + k * {B} + s] - top)")
    w(f"    S[{dest} + k * {B} + s] = e")
    w("    tot += e")
    w("inv = _1 / tot")
    w(f"for k in range({dL}):")
    w(f"    S[{dest} + k * {B} + s] *= inv")


def _output_gradient(w: _Writer, lay: _Layout, spec: NetworkSpec) -> None:
    """Loss of the block's valid lanes into ``lsum``; dz of the output layer (0 in padding)."""
    B, dL, L = lay.lanes, lay.widths[-1], lay.n_layers
    zo, yo, go = lay.z[L], lay.y, lay.dz[L]
    out = spec.activations[-1]
    if out == "softmax":
        w("for s in range(nl):")
        with w.indent():
            _softmax_lanes(w, lay, go)  # probabilities into dz's slot, then overwritten
            w("ok = s < m")
            if spec.loss == "cross_entropy":
                # matched pair: dz = (softmax(z) - y) * scale
                w("lse = top + math.log(tot)")
                w("lrow = 0.0")
                w(f"for k in range({dL}):")
                with w.indent():
                    w(f"yk = S[{yo} + k * {B} + s]")
                    w(f"lrow += yk * (lse - S[{zo} + k * {B} + s])")
                    w(f"S[{go} + k * {B} + s] = (S[{go} + k * {B} + s] - yk) * sc if ok else _0")
            else:
                # squared error through the softmax Jacobian: p * (g - <g, p>)
                w("lrow = 0.0")
                w("dot = _0")
                w(f"for k in range({dL}):")
                with w.indent():
                    w(f"diff = S[{go} + k * {B} + s] - S[{yo} + k * {B} + s]")
                    w("lrow += 0.5 * diff * diff")
                    w(f"dot += diff * sc * S[{go} + k * {B} + s]")
                w(f"for k in range({dL}):")
                with w.indent():
                    w(f"p = S[{go} + k * {B} + s]")
                    w(f"diff = p - S[{yo} + k * {B} + s]")
                    w(f"S[{go} + k * {B} + s] = p * (diff * sc - dot) if ok else _0")
            w("if ok:")
            w("    lsum += lrow")
        return
    w(f"for k in range({dL}):")
    with w.indent():
        w("for s in range(nl):")
        with w.indent():
            w(f"v = S[{zo} + k * {B} + s]")
            w(f"yk = S[{yo} + k * {B} + s]")
            w("ok = s < m")
            if spec.loss == "binary_cross_entropy":
                # matched pair; one exp serves the sigmoid and the log-sigmoid loss
                w("e = _exp_neg(-abs(v))")
                w("inv = _1 / (_1 + e)")
                w("p = inv if v >= _0 else e * inv")
                w("lv = (_0 if v <= _0 else v) - yk * v + _log1p_unit(e)")
                w("g = (p - yk) * sc")
            else:
                w(f"p = {_ACTIVATE[out].format(v='v')}")
                w("diff = p - yk")
                w("lv = _HALF * diff * diff")
                g = "diff * sc"
                if out != "identity":  # identity + squared error is the matched pair
                    g += " * " + _DERIVATIVE[out].format(z="v", a="p")
                w(f"g = {g}")
            w(f"S[{go} + k * {B} + s] = g if ok else _0")
            w("if ok:")
            w("    lsum += lv")


def _backward_layers(w: _Writer, lay: _Layout, activations: tuple[str, ...]) -> None:
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
                deriv = _DERIVATIVE[act].format(
                    z=f"S[{zb} + i * {B} + s]", a=f"S[{ab} + i * {B} + s]"
                )
                w("for s in range(nl):")
                w(f"    S[{below} + i * {B} + s] *= {deriv}")


# -- exp and log1p that vectorize ----------------------------------------------------------
# Numba calls libm for math.exp and math.log1p, one sample at a time (no SVML without Intel's
# runtime). The binary cross-entropy output needs exp(-|z|) and log1p of it for every sample,
# which dominated the small-network step; these branch-free versions (fdlibm's reductions and
# polynomials) inline into the sample loop and let LLVM vectorize it. They are compiled
# without fastmath: reassociation would undo the Cody-Waite reduction.
_EXP_CONSTANTS = {
    # (clamp below which the result flushes to 0, ln2 hi, ln2 lo, Taylor degree, int, bias,
    # mantissa bits)
    "float64": (-708.0, 6.9314718036912382e-01, 1.9082149292705877e-10, 13, "int64", 1023, 52),
    "float32": (-87.0, 0.693145751953125, 1.4286068203094172e-06, 7, "int32", 127, 23),
}
# fdlibm's log1p/log polynomial in s^2, s = f / (2 + f), for f in [sqrt(2)/2 - 1, sqrt(2) - 1]
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)


def _math_helpers(dtype: str) -> list[str]:
    """Source of ``_exp_neg(x)`` (``exp(x)`` for ``x <= 0``) and ``_log1p_unit(e)`` (``log1p(e)``
    for ``0 <= e <= 1``), both within about 1 ulp and propagating NaN."""
    xmin, ln2_hi, ln2_lo, degree, itype, bias, bits = _EXP_CONSTANTS[dtype]
    horner = f"DT({1.0 / math.factorial(degree)!r})"  # Taylor series of exp(r), |r| <= ln2 / 2
    for n in range(degree - 1, 1, -1):
        horner = f"DT({1.0 / math.factorial(n)!r}) + r * ({horner})"
    horner = f"_1 + r * (_1 + r * ({horner}))"
    lg = [f"DT({c!r})" for c in _LG]
    return [
        "",
        "",
        "@njit(cache=True, error_model='numpy')",
        "def _exp_neg(x):",
        '    """exp(x) for x <= 0 (NaN stays NaN; below the normal range it flushes to 0)."""',
        f"    xc = DT({xmin!r}) if x < DT({xmin!r}) else x",
        f"    t = xc * DT({1.0 / math.log(2.0)!r})",
        f"    k = np.{itype}(t - _HALF) if t == t else np.{itype}(0)  # round half down; t <= 0",
        "    kf = DT(k)",
        f"    r = (xc - kf * DT({ln2_hi!r})) - kf * DT({ln2_lo!r})",
        f"    p = {horner}",
        f"    scale = np.{itype}((k + np.{itype}({bias})) << np.{itype}({bits})).view(DT)",
        f"    return _0 if x < DT({xmin!r}) else p * scale",
        "",
        "",
        "@njit(cache=True, error_model='numpy')",
        "def _log1p_unit(e):",
        '    """log1p(e) for 0 <= e <= 1 (NaN stays NaN)."""',
        f"    big = e > DT({math.sqrt(2.0) - 1.0!r})",
        "    f = (e - _1) * _HALF if big else e  # log1p(e) = k ln2 + log1p(f)",
        "    k = _1 if big else _0",
        "    s = f / (DT(2.0) + f)",
        "    z = s * s",
        "    w = z * z",
        f"    t1 = w * ({lg[1]} + w * ({lg[3]} + w * {lg[5]}))",
        f"    t2 = z * ({lg[0]} + w * ({lg[2]} + w * ({lg[4]} + w * {lg[6]})))",
        "    hfsq = _HALF * f * f",
        f"    low = s * (hfsq + t1 + t2) + k * DT({ln2_lo!r})",
        f"    return k * DT({ln2_hi!r}) - ((hfsq - low) - f)",
        "",
        "",
        "@njit(cache=True, error_model='numpy')",
        "def _sigmoid(v):",
        '    """1 / (1 + exp(-v)) from exp(-|v|), which never overflows."""',
        "    e = _exp_neg(-abs(v))",
        "    inv = _1 / (_1 + e)",
        "    return inv if v >= _0 else e * inv",
    ]


def _chunk_bounds(w: _Writer, lanes: int) -> None:
    w("n = X.shape[0]")
    w(f"per = (n + {lanes} * chunks - 1) // ({lanes} * chunks) * {lanes}")


#: Rows per block of the unrolled kernel.
_ROWS = 256

#: Networks with at most this many weights are unrolled into scalar code per sample.
_UNROLL_LIMIT = 128


def _unrolled(spec: NetworkSpec) -> bool:
    """Whether ``spec`` gets the unrolled per-sample kernel (else the lane-block kernel)."""
    d = spec.widths
    return sum(d[k] * d[k + 1] for k in range(len(d) - 1)) <= _UNROLL_LIMIT


def _scalar_forward(w: _Writer, spec: NetworkSpec, through_output: bool) -> None:
    """Unrolled forward pass of sample ``r`` into scalar locals ``z{k}_{j}``, ``a{k}_{j}``."""
    d, L = spec.widths, len(spec.widths) - 1
    for i in range(d[0]):
        w(f"a0_{i} = X[r, {i}]")
    for k in range(1, L + 1 if through_output else L):
        for j in range(d[k]):
            terms = " + ".join(f"a{k - 1}_{i} * w{k}_{i}_{j}" for i in range(d[k - 1]))
            w(f"z{k}_{j} = b{k}_{j} + {terms}")
            if k < L:
                w(f"a{k}_{j} = {_ACTIVATE[spec.activations[k - 1]].format(v=f'z{k}_{j}')}")


def _scalar_chunks(w: _Writer, spec: NetworkSpec, serial: str) -> None:
    """``train_chunk``/``forward_chunk`` as unrolled scalar code per sample.

    Each block of :data:`_ROWS` samples takes three loops: the forward pass to the output
    logits, the output activation and loss (over unit-stride scratch, with the inlined
    :func:`_math_helpers`), and the forward pass again with the backward pass. LLVM
    vectorizes all three across samples; the gradients are scalar reductions it keeps in
    vector registers.
    """
    d, L = spec.widths, len(spec.widths) - 1
    dL = d[-1]
    params = ", ".join(f"W{k}, b{k}" for k in range(1, L + 1))

    def load_weights() -> None:
        for k in range(1, L + 1):
            for i in range(d[k - 1]):
                for j in range(d[k]):
                    w(f"w{k}_{i}_{j} = W{k}[{i}, {j}]")
            for j in range(d[k]):
                w(f"b{k}_{j} = b{k}[{j}]")

    w("")
    w("")
    w(serial)
    w(f"def train_chunk(X, Y, {params}, lo, hi, sc, grads, nl):")
    with w.indent():
        w('"""Loss sum of rows [lo, hi); their gradients are added into ``grads``."""')
        load_weights()
        for k in range(1, L + 1):
            for i in range(d[k - 1]):
                for j in range(d[k]):
                    w(f"gw{k}_{i}_{j} = _0")
            for j in range(d[k]):
                w(f"gb{k}_{j} = _0")
        # Flat scratch, one row of _ROWS per output: the output loop reads and writes it with
        # unit stride, as it must to vectorize.
        for name in ("ZB", "YB", "GB"):
            w(f"{name} = np.empty({dL * _ROWS}, dtype=DT)")
        w("lsum = 0.0")
        w(f"for r0 in range(lo, hi, {_ROWS}):")
        with w.indent():
            w(f"m = min(hi - r0, {_ROWS})")
            w("for t in range(m):")
            with w.indent():
                w("r = r0 + t")
                _scalar_forward(w, spec, through_output=True)
                for j in range(dL):
                    w(f"ZB[{j * _ROWS} + t] = z{L}_{j}")
                    w(f"YB[{j * _ROWS} + t] = Y[r, {j}]")
            _scalar_output(w, spec)
            w("for t in range(m):")
            with w.indent():
                w("r = r0 + t")
                _scalar_forward(w, spec, through_output=False)
                for j in range(dL):
                    w(f"d{L}_{j} = GB[{j * _ROWS} + t]")
                for k in range(L, 0, -1):
                    for i in range(d[k - 1]):
                        for j in range(d[k]):
                            w(f"gw{k}_{i}_{j} += a{k - 1}_{i} * d{k}_{j}")
                    for j in range(d[k]):
                        w(f"gb{k}_{j} += d{k}_{j}")
                    if k == 1:
                        continue
                    act = spec.activations[k - 2]
                    for i in range(d[k - 1]):
                        terms = " + ".join(f"w{k}_{i}_{j} * d{k}_{j}" for j in range(d[k]))
                        if act == "identity":
                            w(f"d{k - 1}_{i} = {terms}")
                        else:
                            der = _DERIVATIVE[act].format(z=f"z{k - 1}_{i}", a=f"a{k - 1}_{i}")
                            w(f"d{k - 1}_{i} = ({terms}) * {der}")
        q = 0
        for k in range(1, L + 1):
            for i in range(d[k - 1]):
                for j in range(d[k]):
                    w(f"grads[{q}] += gw{k}_{i}_{j}")
                    q += 1
            for j in range(d[k]):
                w(f"grads[{q}] += gb{k}_{j}")
                q += 1
        w("return lsum")
    w("")
    w("")
    w(serial)
    w(f"def forward_chunk(X, {params}, lo, hi, out, nl):")
    with w.indent():
        w('"""Outputs of rows [lo, hi) into ``out``."""')
        load_weights()
        w("for r in range(lo, hi):")
        with w.indent():
            _scalar_forward(w, spec, through_output=True)
            for j in range(dL):
                w(f"out[r, {j}] = z{L}_{j}")
        out = spec.activations[-1]
        w("for r in range(lo, hi):")
        with w.indent():
            if out == "softmax":
                w("top = out[r, 0]")
                w(f"for k in range(1, {dL}):")
                w("    if out[r, k] > top:")
                w("        top = out[r, k]")
                w("tot = _0")
                w(f"for k in range({dL}):")
                w("    e = _exp_neg(out[r, k] - top)")
                w("    out[r, k] = e")
                w("    tot += e")
                w("inv = _1 / tot")
                w(f"for k in range({dL}):")
                w("    out[r, k] *= inv")
            else:
                w(f"for k in range({dL}):")
                w("    v = out[r, k]")
                w(f"    out[r, k] = {_ACTIVATE[out].format(v='v')}")


def _scalar_output(w: _Writer, spec: NetworkSpec) -> None:
    """Loss of the block's ``m`` rows into ``lsum`` and their output dz into ``GB``.

    Reads the logits ``ZB`` and targets ``YB`` (output ``k`` of row ``t`` at ``k * _ROWS + t``).
    Elementwise outputs loop over the rows innermost, which vectorizes.
    """
    dL, B = spec.widths[-1], _ROWS
    out = spec.activations[-1]
    if out == "softmax":
        w("for t in range(m):")
        with w.indent():
            w("top = ZB[t]")
            w(f"for k in range(1, {dL}):")
            w(f"    if ZB[k * {B} + t] > top:")
            w(f"        top = ZB[k * {B} + t]")
            w("tot = _0")
            w(f"for k in range({dL}):")
            w(f"    e = _exp_neg(ZB[k * {B} + t] - top)")
            w(f"    GB[k * {B} + t] = e")
            w("    tot += e")
            w("inv = _1 / tot")
            w(f"for k in range({dL}):")
            w(f"    GB[k * {B} + t] *= inv")
            if spec.loss == "cross_entropy":
                # matched pair: dz = (softmax(z) - y) * scale
                w("lse = top + math.log(tot)")
                w(f"for k in range({dL}):")
                w(f"    q = k * {B} + t")
                w("    lsum += YB[q] * (lse - ZB[q])")
                w("    GB[q] = (GB[q] - YB[q]) * sc")
            else:
                # squared error through the softmax Jacobian: p * (g - <g, p>)
                w("dot = _0")
                w(f"for k in range({dL}):")
                w(f"    q = k * {B} + t")
                w("    diff = GB[q] - YB[q]")
                w("    lsum += 0.5 * diff * diff")
                w("    dot += diff * sc * GB[q]")
                w(f"for k in range({dL}):")
                w(f"    q = k * {B} + t")
                w("    p = GB[q]")
                w("    GB[q] = p * ((p - YB[q]) * sc - dot)")
        return
    w(f"for k in range({dL}):")
    with w.indent():
        w("for t in range(m):")
        with w.indent():
            w(f"q = k * {B} + t")
            w("v = ZB[q]")
            w("yk = YB[q]")
            if spec.loss == "binary_cross_entropy":
                # matched pair; one exp serves the sigmoid and the log-sigmoid loss
                w("e = _exp_neg(-abs(v))")
                w("inv = _1 / (_1 + e)")
                w("p = inv if v >= _0 else e * inv")
                w("lsum += (_0 if v <= _0 else v) - yk * v + _log1p_unit(e)")
                w("GB[q] = (p - yk) * sc")
            else:
                w(f"p = {_ACTIVATE[out].format(v='v')}")
                w("diff = p - yk")
                w("lsum += _HALF * diff * diff")
                g = "diff * sc"
                if out != "identity":  # identity + squared error is the matched pair
                    g += " * " + _DERIVATIVE[out].format(z="v", a="p")
                w(f"GB[q] = {g}")


def _lane_chunks(w: _Writer, spec: NetworkSpec, serial: str) -> None:
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
                    _softmax_lanes(w, lay, zo)
                    w(f"for k in range({dL}):")
                    w(f"    out[r + s, k] = S[{zo} + k * {B} + s]")
            else:
                expr = _ACTIVATE[spec.activations[-1]].format(v=f"S[{zo} + k * {B} + s]")
                w("for s in range(m):")
                w(f"    for k in range({dL}):")
                w(f"        out[r + s, k] = {expr}")


def _shaped_return(w: _Writer, spec: NetworkSpec, loss: str) -> None:
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
    L, B, dL = lay.n_layers, lay.lanes, lay.widths[-1]
    params = ", ".join(f"W{k}, b{k}" for k in range(1, L + 1))
    w = _Writer()
    w(f'"""Generated by mlp_accel for {spec}; do not edit."""')
    w("import math")
    w("import numpy as np")
    w("from numba import njit, prange")
    w(f"DT = np.{spec.dtype}")
    w("_0 = DT(0.0)")
    w("_1 = DT(1.0)")
    w("_HALF = DT(0.5)")
    w("_SLOPE = DT(0.01)")
    # sorted, so the source (and its hash, the file name) is the same in every process
    w("FASTMATH = {" + ", ".join(repr(flag) for flag in sorted(FASTMATH)) + "}")
    # rows per block of the unrolled kernel; lanes per block of the lane kernel
    w(f"BLOCK = {_ROWS if _unrolled(spec) else block_size(spec.dtype)}")
    w.lines += _math_helpers(spec.dtype)
    # error_model="numpy": a float division needs no zero check, so loops with one vectorize
    serial = "@njit(cache=True, fastmath=FASTMATH, error_model='numpy')"
    parallel = "@njit(cache=True, fastmath=FASTMATH, error_model='numpy', parallel=True)"
    P = lay.n_params
    # The per-sample work is compiled once, in the *_chunk kernels; the serial and parallel
    # entry points only split the rows (parfor analysis of a big body is slow to compile).
    if _unrolled(spec):
        _scalar_chunks(w, spec, serial)
    else:
        _lane_chunks(w, spec, serial)
    w("")
    w("")
    w(serial)
    w(f"def train_serial(X, Y, {params}, scale, chunks, nl):")
    with w.indent():
        # n - n, not 0: a literal 0 would compile train_chunk a second time
        w("n = X.shape[0]")
        w(f"grads = np.zeros({P}, dtype=DT)")
        w(f"lsum = train_chunk(X, Y, {params}, n - n, n, DT(scale), grads, nl)")
        _shaped_return(w, spec, "lsum")
    w("")
    w("")
    w(parallel)
    w(f"def train_parallel(X, Y, {params}, scale, chunks, nl):")
    with w.indent():
        _chunk_bounds(w, B)
        w("sc = DT(scale)")
        w(f"partial = np.zeros((chunks, {P}), dtype=DT)")
        w("losses = np.zeros(chunks)")
        w("for c in prange(chunks):")
        with w.indent():
            w("lo = min(n, c * per)")
            w(f"losses[c] = train_chunk(X, Y, {params}, lo, min(n, lo + per), sc, partial[c], nl)")
        w(f"grads = np.zeros({P}, dtype=DT)")
        w("for c in range(chunks):")
        w(f"    for q in range({P}):")
        w("        grads[q] += partial[c, q]")
        _shaped_return(w, spec, "losses.sum()")
    w("")
    w("")
    w(serial)
    w(f"def forward_serial(X, {params}, chunks, nl):")
    with w.indent():
        w("n = X.shape[0]")
        w(f"out = np.empty((n, {dL}), dtype=DT)")
        w(f"forward_chunk(X, {params}, n - n, n, out, nl)")
        w("return out")
    w("")
    w("")
    w(parallel)
    w(f"def forward_parallel(X, {params}, chunks, nl):")
    with w.indent():
        _chunk_bounds(w, B)
        w(f"out = np.empty((n, {dL}), dtype=DT)")
        w("for c in prange(chunks):")
        with w.indent():
            w("lo = min(n, c * per)")
            w(f"forward_chunk(X, {params}, lo, min(n, lo + per), out, nl)")
        w("return out")
    return "\n".join(w.lines) + "\n"


def load_module(spec: NetworkSpec) -> ModuleType:
    """The generated kernel module for ``spec``: from memory, else written and imported.

    The file name is a hash of the source, so a changed generator never reuses stale code,
    and Numba's on-disk cache (keyed by the file) stays valid across processes.
    """
    key = (spec.widths, spec.activations, spec.loss, spec.dtype)
    with _lock:
        module = _modules.get(key)
        if module is not None:
            return module
        source = generate_source(spec)
        digest = hashlib.sha1(source.encode()).hexdigest()[:20]
        name = f"mlp_accel_fused_{digest}"
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
            os.replace(tmp, path)
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # numba's cache locates functions through their module
        module_spec.loader.exec_module(module)
        _modules[key] = module
        return module
