"""CUDA C sources of the CuPy backend's fused kernels, generated per dtype (and shape).

Nothing here imports CuPy: the functions return ``(source, kernel_name)`` pairs that
:class:`~mlp_accel.backends.cupy_backend.CupyBackend` compiles with ``cupy.RawKernel`` (NVRTC)
on first use. Keeping the sources plain strings lets the test suite compile them with ``nvcc``
and run them in a CPU emulator on machines without a GPU.

Every kernel is written for a 1-D or (32, 8) block, loops grid-stride so any grid size is
correct, and reduces deterministically (per-block partial sums, then
:func:`sum_segments_source`) so a seed gives the same bits run after run; no atomics.

The activations and losses are rendered from the rows of :mod:`mlp_accel.ops.table`, the
expressions the ``xp`` reference evaluates, operation for operation, so float64 results agree
with NumPy to rounding. Softmax and cross-entropy (not elementwise) are written here by hand.
"""

from __future__ import annotations

from ..ops import expr as E
from ..ops.layout import n_parameters, param_layout
from ..ops.table import ACTIVATION_ROWS, loss_row

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "BLOCK",
    "COLSUM_BLOCK",
    "MAX_SOFTMAX_WIDTH",
    "preamble",
    "bias_activation_source",
    "bias_softmax_source",
    "output_gradient_source",
    "softmax_cross_entropy_source",
    "colsum_source",
    "sum_segments_source",
    "adam_source",
    "sgd_source",
    "fused_train_source",
    "fused_forward_source",
    "fused_supported",
    "n_parameters",
    "is_elementwise",
]

#: The built-in activations with a diagonal Jacobian, which the elementwise kernels handle
#: (as they handle registered ones: see :func:`is_elementwise`).
ELEMENTWISE_ACTIVATIONS = tuple(
    name for name, row in ACTIVATION_ROWS.items() if row.elementwise and row.builtin
)


def is_elementwise(activation: str) -> bool:
    """Whether ``activation`` is a row of the table with a diagonal Jacobian."""
    row = ACTIVATION_ROWS.get(activation)
    return row is not None and row.elementwise


#: Threads per block of the 1-D kernels (a multiple of 32, as the warp reductions need). Every
#: kernel is compiled with ``__launch_bounds__(256)``, so it always has the registers to launch.
BLOCK = 256
#: Block shape of the column-sum kernels: 32 columns (one warp, coalesced) by 8 row lanes.
COLSUM_BLOCK = (32, 8)
#: Widest softmax the one-thread-per-row kernels handle; wider ones use the generic code.
MAX_SOFTMAX_WIDTH = 64
#: Largest per-thread gradient accumulator (bytes) of the fused whole-network kernel; beyond
#: it the accumulators spill out of registers and the layer-by-layer path is faster.
MAX_FUSED_ACCUMULATOR_BYTES = 1024
#: Widest layer of the fused whole-network kernel.
MAX_FUSED_WIDTH = 32

_CTYPE = {"float32": "float", "float64": "double"}
_SUFFIX = {"float32": "f32", "float64": "f64"}
# Explicit float and double math functions: no reliance on C++ overloads resolving the same
# way under NVRTC and nvcc.
_MATH = {
    "float32": {
        "EXP": "expf",
        "LOG": "logf",
        "LOG1P": "log1pf",
        "TANH": "tanhf",
        "SQRT": "sqrtf",
        "FABS": "fabsf",
        "FMAX": "fmaxf",
        "ERF": "erff",
        "EXPM1": "expm1f",
        "POW": "powf",
    },
    "float64": {
        "EXP": "exp",
        "LOG": "log",
        "LOG1P": "log1p",
        "TANH": "tanh",
        "SQRT": "sqrt",
        "FABS": "fabs",
        "FMAX": "fmax",
        "ERF": "erf",
        "EXPM1": "expm1",
        "POW": "pow",
    },
}


def _check_dtype(dtype: str) -> None:
    if dtype not in _CTYPE:
        raise ValueError(f"fused CUDA kernels support float32 and float64, got {dtype!r}")


def _name(base: str, dtype: str) -> str:
    return f"mlp_{base}_{_SUFFIX[dtype]}"


def _activation_functions() -> str:
    """``f_<name>(z)`` and ``d_<name>(z, a)`` of every elementwise row of the table."""
    out = []
    for name, row in ACTIVATION_ROWS.items():
        if not row.elementwise:
            continue
        f = E.to_cuda(row.forward_tree, {"z": "z"})
        d = E.to_cuda(row.derivative_tree, {"z": "z", "a": "a"})
        out.append(f"__device__ __forceinline__ real f_{name}(real z) {{ return {f}; }}")
        out.append(
            f"__device__ __forceinline__ real d_{name}(real z, real a) {{ (void)z; (void)a; "
            f"return {d}; }}"
        )
    return "\n".join(out)


def preamble(dtype: str) -> str:
    """Type, math macros, activation functions and reductions shared by every kernel."""
    _check_dtype(dtype)
    math = "\n".join(f"#define {k} {v}" for k, v in _MATH[dtype].items())
    return f"""
typedef {_CTYPE[dtype]} real;
{math}

// np.maximum / np.minimum: NaN if either argument is NaN (fmax would drop it).
__device__ __forceinline__ real nan_max(real x, real y) {{ return (x > y || x != x) ? x : y; }}
__device__ __forceinline__ real nan_min(real x, real y) {{ return (x < y || x != x) ? x : y; }}

// Activations f(z) and derivatives f'(z) (from z or a = f(z)), rendered from the math table.
{_activation_functions()}

// Sum over the 32 lanes of a warp; every lane must call it. Lane 0 holds the result.
__device__ __forceinline__ real warp_sum(real v) {{
    for (int offset = 16; offset > 0; offset >>= 1) {{
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }}
    return v;
}}

// Sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread must call
// it. Thread 0 holds the result. `shared` holds at least 32 values.
__device__ __forceinline__ real block_sum(real v, real* shared) {{
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[threadIdx.x] : (real)0;
    if (warp == 0) v = warp_sum(v);
    return v;
}}
"""


def _check_activation(activation: str) -> None:
    if not is_elementwise(activation):
        raise ValueError(f"no elementwise CUDA kernel for activation {activation!r}")


def bias_activation_source(activation: str, dtype: str) -> tuple[str, str]:
    """``z += b`` (row broadcast) in place and ``a = f(z)``, one pass.

    Arguments ``(z, b, a, rows, cols)``; the identity variant has no ``a`` (``a`` is ``z``).
    """
    _check_activation(activation)
    name = _name(f"bias_{activation}", dtype)
    if activation == "identity":
        params, store = "real* __restrict__ z, const real* __restrict__ b", ""
    else:
        params = "real* __restrict__ z, const real* __restrict__ b, real* __restrict__ a"
        store = f"a[i] = f_{activation}(t);"
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}({params}, const long long rows, const long long cols) {{
    const long long total = rows * cols;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {{
        const real t = z[i] + b[i % cols];
        z[i] = t;
        {store}
    }}
}}
"""
    return preamble(dtype) + body, name


def bias_softmax_source(dtype: str) -> tuple[str, str]:
    """``z += b`` in place and the row softmax ``a``, one thread per row.

    Arguments ``(z, b, a, rows, cols)``; for ``cols <= MAX_SOFTMAX_WIDTH``.
    """
    name = _name("bias_softmax", dtype)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(real* __restrict__ z, const real* __restrict__ b,
                                  real* __restrict__ a, const long long rows,
                                  const long long cols) {{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {{
        real* zr = z + r * cols;
        real* ar = a + r * cols;
        real m = (real)0;
        for (long long j = 0; j < cols; ++j) {{
            const real t = zr[j] + b[j];
            zr[j] = t;
            // The row maximum, keeping NaN as xp.max does.
            if (j == 0 || t > m || t != t) m = t;
        }}
        real s = (real)0;
        for (long long j = 0; j < cols; ++j) {{
            const real e = EXP(zr[j] - m);
            ar[j] = e;
            s += e;
        }}
        for (long long j = 0; j < cols; ++j) ar[j] = ar[j] / s;
    }}
}}
"""
    return preamble(dtype) + body, name


def output_gradient_source(loss: str, activation: str, dtype: str) -> tuple[str, str]:
    """Output ``dz`` and per-block loss sums for an elementwise output activation.

    Handles every elementwise loss of the table with the output activations it accepts
    (binary cross-entropy with sigmoid, poisson with exp, squared error with any).
    Arguments ``(z, yhat, y, dz, dst, total, inv_denom)``; block ``b`` writes its loss sum to
    ``dst[b]``.
    """
    _check_activation(activation)
    row = loss_row(loss)
    if row.value_tree is None:
        raise ValueError(f"no elementwise CUDA kernel for loss {loss!r}")
    if row.requires not in (None, activation):
        raise ValueError(f"loss {loss!r} needs a {row.requires!r} output")
    names = {"z": "zi", "a": "ai", "y": "yi"}
    # The loss from the logits, as the table writes it.
    value = f"acc += {E.to_cuda(row.value_tree, names)};"
    if row.matched == activation:
        # Matched pair: dL/dz is exactly (yhat - y) / denom.
        grad = "dz[i] = (ai - yi) * inv_denom;"
    else:
        dl_da = E.to_cuda(row.grad_tree, names)
        grad = f"dz[i] = (({dl_da}) * inv_denom) * d_{activation}(zi, ai);"
    name = _name(f"outgrad_{loss}_{activation}", dtype)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ z, const real* __restrict__ yhat,
                                  const real* __restrict__ y, real* __restrict__ dz,
                                  real* __restrict__ dst, const long long total,
                                  const real inv_denom) {{
    __shared__ real shared[32];
    real acc = (real)0;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {{
        const real zi = z[i];
        const real ai = yhat[i];
        const real yi = y[i];
        (void)zi;
        (void)ai;
        {value}
        {grad}
    }}
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) dst[blockIdx.x] = acc;
}}
"""
    return preamble(dtype) + body, name


def softmax_cross_entropy_source(dtype: str) -> tuple[str, str]:
    """Softmax + cross-entropy: ``dz = (yhat - y) / denom`` and per-block loss sums.

    One thread per row. Arguments ``(z, yhat, y, dz, dst, rows, cols, inv_denom)``.
    """
    name = _name("outgrad_cross_entropy_softmax", dtype)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ z, const real* __restrict__ yhat,
                                  const real* __restrict__ y, real* __restrict__ dz,
                                  real* __restrict__ dst, const long long rows,
                                  const long long cols, const real inv_denom) {{
    __shared__ real shared[32];
    real acc = (real)0;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {{
        const real* zr = z + r * cols;
        const real* ar = yhat + r * cols;
        const real* yr = y + r * cols;
        real* dzr = dz + r * cols;
        real m = zr[0];
        for (long long j = 1; j < cols; ++j) {{
            if (zr[j] > m || zr[j] != zr[j]) m = zr[j];
        }}
        real s = (real)0;
        for (long long j = 0; j < cols; ++j) s += EXP(zr[j] - m);
        // Loss from logits, as losses.py: sum_j y_j (logsumexp(z) - z_j).
        const real lse = m + LOG(s);
        for (long long j = 0; j < cols; ++j) {{
            acc += yr[j] * (lse - zr[j]);
            // Matched pair: dL/dz is exactly (yhat - y) / denom.
            dzr[j] = (ar[j] - yr[j]) * inv_denom;
        }}
    }}
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) dst[blockIdx.x] = acc;
}}
"""
    return preamble(dtype) + body, name


def colsum_source(activation: str, dtype: str) -> tuple[str, str]:
    """``dz = grad * f'(z)`` and partial column sums of ``dz``, one pass over the data.

    Block ``(32, 8)``; block ``(bx, by)`` covers columns ``32 bx ...`` and rows
    ``by * rows_per_block ...`` and writes its column sums to ``dst[col * gridDim.y + by]``
    (with one row chunk, ``dst`` is the column-sum vector itself). Arguments
    ``(grad, z, a, dz, dst, rows, cols, rows_per_block)``; the identity variant only sums
    ``grad``: ``(grad, dst, rows, cols, rows_per_block)``.
    """
    _check_activation(activation)
    name = _name(f"colsum_{activation}", dtype)
    if activation == "identity":
        params = "const real* __restrict__ grad, real* __restrict__ dst"
        step = "acc += grad[i];"
    else:
        params = (
            "const real* __restrict__ grad, const real* __restrict__ z, "
            "const real* __restrict__ a, real* __restrict__ dz, real* __restrict__ dst"
        )
        step = (
            f"const real d = grad[i] * d_{activation}(z[i], a[i]);\n"
            "            dz[i] = d;\n"
            "            acc += d;"
        )
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}({params}, const long long rows, const long long cols,
                                  const long long rows_per_block) {{
    __shared__ real shared[8][33];
    const long long col = (long long)blockIdx.x * 32 + threadIdx.x;
    const long long r0 = (long long)blockIdx.y * rows_per_block;
    long long r1 = r0 + rows_per_block;
    if (r1 > rows) r1 = rows;
    real acc = (real)0;
    if (col < cols) {{
        for (long long r = r0 + threadIdx.y; r < r1; r += 8) {{
            const long long i = r * cols + col;
            {step}
        }}
    }}
    shared[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {{
        real s = (real)0;
        for (int k = 0; k < 8; ++k) s += shared[k][threadIdx.x];
        dst[col * gridDim.y + blockIdx.y] = s;
    }}
}}
"""
    return preamble(dtype) + body, name


def sum_segments_source(dtype: str) -> tuple[str, str]:
    """``out[k] = sum(src[k * seglen : (k + 1) * seglen])``, one block per segment.

    Arguments ``(src, out, seglen)``; grid ``(n_segments,)``.
    """
    name = _name("sum_segments", dtype)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ src, real* __restrict__ out,
                                  const long long seglen) {{
    __shared__ real shared[32];
    const real* seg = src + (long long)blockIdx.x * seglen;
    real acc = (real)0;
    for (long long t = threadIdx.x; t < seglen; t += blockDim.x) acc += seg[t];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}}
"""
    return preamble(dtype) + body, name


def _segment_dispatch(sizes: tuple[int, ...], names: tuple[str, ...]) -> str:
    """Code that points ``<name>`` at tensor k's ``<name>k`` and sets ``j`` for flat index ``i``."""
    lines = []
    offset = 0
    for k, size in enumerate(sizes):
        end = offset + size
        cond = f"if (i < {end}LL)" if k < len(sizes) - 1 else ""
        prefix = "" if k == 0 else "else "
        assign = " ".join(f"{n} = {n}{k};" for n in names)
        lines.append(
            f"{prefix}{cond} {{ {assign} j = i - {offset}LL; }}".replace("else  {", "else {")
        )
        offset = end
    return "\n        ".join(lines)


def _check_sizes(sizes: tuple[int, ...]) -> None:
    if not sizes or any(int(s) < 1 for s in sizes):
        raise ValueError(f"tensor sizes must be positive, got {sizes}")


def adam_source(sizes: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """Adam on several tensors in one launch, in place, specialized on their sizes.

    Arguments ``(p0, g0, m0, v0, p1, g1, m1, v1, ..., lr, beta1, one_minus_beta1, beta2,
    one_minus_beta2, eps, c1, c2)`` with ``c1 = 1 - beta1**t`` and ``c2 = 1 - beta2**t``.
    """
    _check_sizes(sizes)
    total = sum(sizes)
    params = ", ".join(
        f"real* __restrict__ p{k}, const real* __restrict__ g{k}, real* __restrict__ m{k}, "
        f"real* __restrict__ v{k}"
        for k in range(len(sizes))
    )
    name = _name("adam_" + "_".join(map(str, sizes)), dtype)
    dispatch = _segment_dispatch(tuple(sizes), ("p", "g", "m", "v"))
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}({params}, const real lr, const real beta1,
                                  const real one_minus_beta1, const real beta2,
                                  const real one_minus_beta2, const real eps, const real c1,
                                  const real c2) {{
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = first; i < {total}LL; i += stride) {{
        real* p; const real* g; real* m; real* v; long long j;
        {dispatch}
        const real gj = g[j];
        // The operations of Backend.adam_update, in its order.
        const real mj = beta1 * m[j] + one_minus_beta1 * gj;
        const real vj = beta2 * v[j] + one_minus_beta2 * (gj * gj);
        m[j] = mj;
        v[j] = vj;
        p[j] = p[j] - (lr * (mj / c1)) / (SQRT(vj / c2) + eps);
    }}
}}
"""
    return preamble(dtype) + body, name


def sgd_source(sizes: tuple[int, ...], dtype: str, variant: str) -> tuple[str, str]:
    """SGD on several tensors in one launch, in place, specialized on their sizes.

    ``variant`` is ``"plain"`` (arguments ``(p0, g0, ..., lr)``), ``"momentum"`` or
    ``"nesterov"`` (arguments ``(p0, g0, v0, ..., lr, momentum)``).
    """
    _check_sizes(sizes)
    if variant not in ("plain", "momentum", "nesterov"):
        raise ValueError(f"unknown SGD variant {variant!r}")
    total = sum(sizes)
    name = _name(f"sgd_{variant}_" + "_".join(map(str, sizes)), dtype)
    if variant == "plain":
        names: tuple[str, ...] = ("p", "g")
        params = ", ".join(
            f"real* __restrict__ p{k}, const real* __restrict__ g{k}" for k in range(len(sizes))
        )
        extra = "const real lr"
        decl = "real* p; const real* g; long long j;"
        update = "p[j] = p[j] - lr * g[j];"
    else:
        names = ("p", "g", "v")
        params = ", ".join(
            f"real* __restrict__ p{k}, const real* __restrict__ g{k}, real* __restrict__ v{k}"
            for k in range(len(sizes))
        )
        extra = "const real lr, const real momentum"
        decl = "real* p; const real* g; real* v; long long j;"
        step = "gj + momentum * vj" if variant == "nesterov" else "vj"
        update = (
            "const real gj = g[j];\n        const real vj = momentum * v[j] + gj;\n"
            f"        v[j] = vj;\n        p[j] = p[j] - lr * ({step});"
        )
    dispatch = _segment_dispatch(tuple(sizes), names)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}({params}, {extra}) {{
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = first; i < {total}LL; i += stride) {{
        {decl}
        {dispatch}
        {update}
    }}
}}
"""
    return preamble(dtype) + body, name


# -- the fused whole-network kernel ------------------------------------------------------------
def fused_supported(widths: tuple[int, ...], activations: tuple[str, ...], loss: str, dtype: str):
    """Whether the fused whole-network kernel handles this network (small layers only)."""
    if dtype not in _CTYPE or len(activations) != len(widths) - 1:
        return False
    if max(widths) > MAX_FUSED_WIDTH:
        return False
    itemsize = 4 if dtype == "float32" else 8
    if (n_parameters(widths) + 1) * itemsize > MAX_FUSED_ACCUMULATOR_BYTES:
        return False
    if any(not is_elementwise(a) for a in activations[:-1]):
        return False
    out = activations[-1]
    if out not in ACTIVATION_ROWS or loss not in ("cross_entropy", *_elementwise_losses()):
        return False
    required = loss_row(loss).requires
    if required is not None and out != required:
        return False
    # softmax only with cross-entropy (its matched pair), written by hand
    return (out == "softmax") == (loss == "cross_entropy")


def _elementwise_losses() -> tuple[str, ...]:
    from ..ops.table import LOSS_ROWS

    return tuple(n for n, row in LOSS_ROWS.items() if row.value_tree is not None)


def _param_list(n_layers: int) -> str:
    return ", ".join(
        f"const real* __restrict__ W{k}, const real* __restrict__ b{k}"
        for k in range(1, n_layers + 1)
    )


def _forward_lines(widths: tuple[int, ...], activations: tuple[str, ...]) -> list[str]:
    """Straight-line forward pass of one sample: ``a0_i`` from X, then ``z{k}_j``, ``a{k}_j``."""
    lines = [f"const real a0_{i} = X[s * {widths[0]}LL + {i}];" for i in range(widths[0])]
    n_layers = len(widths) - 1
    for k in range(1, n_layers + 1):
        n_in, n_out = widths[k - 1], widths[k]
        act = activations[k - 1]
        for j in range(n_out):
            terms = " + ".join(f"a{k - 1}_{i} * W{k}[{i * n_out + j}]" for i in range(n_in))
            # (a_prev @ W) + b, in that order, as Backend.dense_forward.
            lines.append(f"const real z{k}_{j} = ({terms}) + b{k}[{j}];")
        if act == "softmax":
            lines.append(f"real m{k} = z{k}_0;")
            for j in range(1, n_out):
                lines.append(f"if (z{k}_{j} > m{k} || z{k}_{j} != z{k}_{j}) m{k} = z{k}_{j};")
            for j in range(n_out):
                lines.append(f"const real e{k}_{j} = EXP(z{k}_{j} - m{k});")
            total = " + ".join(f"e{k}_{j}" for j in range(n_out))
            lines.append(f"const real s{k} = {total};")
            for j in range(n_out):
                lines.append(f"const real a{k}_{j} = e{k}_{j} / s{k};")
        else:
            for j in range(n_out):
                lines.append(f"const real a{k}_{j} = f_{act}(z{k}_{j});")
    return lines


def _offsets(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """Flat offsets ``(of W_k, of b_k)`` in the gradient vector ``[W1, b1, W2, b2, ...]``."""
    slots = param_layout(widths)
    return [(w.offset, b.offset) for w, b in zip(slots[0::2], slots[1::2])]


def fused_train_source(
    widths: tuple[int, ...], activations: tuple[str, ...], loss: str, dtype: str
) -> tuple[str, str]:
    """Forward, loss and backward of a whole small network, one thread per sample.

    Each thread keeps its samples' activations and its gradient sums in registers; each block
    reduces them and writes ``dst[k * gridDim.x + blockIdx.x]`` for parameter ``k`` of the
    flat ``[W1, b1, W2, b2, ...]`` (``k = P`` is the loss sum). Arguments
    ``(X, Y, W1, b1, ..., dst, n, inv_denom)``.
    """
    widths, activations = tuple(int(w) for w in widths), tuple(activations)
    if not fused_supported(widths, activations, loss, dtype):
        raise ValueError(f"no fused kernel for {widths} {activations} {loss} {dtype}")
    n_layers = len(widths) - 1
    n_out = widths[-1]
    n_params = n_parameters(widths)
    n_acc = n_params + 1
    out_act = activations[-1]
    lines = _forward_lines(widths, activations)
    L = n_layers
    # Loss (from logits, as losses.py) and dL/dz of the output layer.
    for j in range(n_out):
        lines.append(f"const real y_{j} = Y[s * {n_out}LL + {j}];")
    if loss == "cross_entropy":
        lines.append(f"const real lse = m{L} + LOG(s{L});")
        for j in range(n_out):
            lines.append(f"g_{n_params} += y_{j} * (lse - z{L}_{j});")
    row = loss_row(loss)
    for j in range(n_out):
        names = {"z": f"z{L}_{j}", "a": f"a{L}_{j}", "y": f"y_{j}"}
        if row.value_tree is not None:  # the table's loss from the logits
            lines.append(f"g_{n_params} += {E.to_cuda(row.value_tree, names)};")
        if row.matched == out_act:
            # Matched pair: dL/dz is exactly (yhat - y) / denom.
            lines.append(f"const real dz{L}_{j} = (a{L}_{j} - y_{j}) * inv_denom;")
        else:
            dl_da = E.to_cuda(row.grad_tree, names)
            lines.append(
                f"const real dz{L}_{j} = (({dl_da}) * inv_denom) * d_{out_act}(z{L}_{j}, a{L}_{j});"
            )
    # Backward: dW_k += a_{k-1} dz_k^T, db_k += dz_k, dz_{k-1} = (dz_k W_k^T) * f'(z_{k-1}).
    offsets = _offsets(widths)
    for k in range(L, 0, -1):
        n_in, n_o = widths[k - 1], widths[k]
        off_w, off_b = offsets[k - 1]
        for i in range(n_in):
            for j in range(n_o):
                lines.append(f"g_{off_w + i * n_o + j} += a{k - 1}_{i} * dz{k}_{j};")
        for j in range(n_o):
            lines.append(f"g_{off_b + j} += dz{k}_{j};")
        if k > 1:
            act = activations[k - 2]
            for i in range(n_in):
                terms = " + ".join(f"dz{k}_{j} * W{k}[{i * n_o + j}]" for j in range(n_o))
                lines.append(
                    f"const real dz{k - 1}_{i} = ({terms}) * d_{act}(z{k - 1}_{i}, a{k - 1}_{i});"
                )
    sample_body = "\n        ".join(lines)
    init = "\n    ".join(f"real g_{k} = (real)0;" for k in range(n_acc))
    reduce_lines = "\n    ".join(
        f"{{ const real v = warp_sum(g_{k}); if (lane == 0) shared[warp * {n_acc} + {k}] = v; }}"
        for k in range(n_acc)
    )
    name = _name(
        "fused_train_" + "_".join(map(str, widths)) + "_" + "_".join(activations) + "_" + loss,
        dtype,
    )
    n_warps = BLOCK // 32
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ X, const real* __restrict__ Y,
                                  {_param_list(n_layers)}, real* __restrict__ dst,
                                  const long long n, const real inv_denom) {{
    // Launched with {BLOCK} threads per block: {n_warps} warps.
    __shared__ real shared[{n_warps} * {n_acc}];
    {init}
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x; s < n; s += stride) {{
        {sample_body}
    }}
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    {reduce_lines}
    __syncthreads();
    for (int k = threadIdx.x; k < {n_acc}; k += blockDim.x) {{
        real t = (real)0;
        for (int w = 0; w < {n_warps}; ++w) t += shared[w * {n_acc} + k];
        dst[(long long)k * gridDim.x + blockIdx.x] = t;
    }}
}}
"""
    return preamble(dtype) + body, name


def fused_forward_source(
    widths: tuple[int, ...], activations: tuple[str, ...], dtype: str
) -> tuple[str, str]:
    """The network's outputs (after the output activation), one thread per sample.

    Arguments ``(X, W1, b1, ..., out, n)``.
    """
    widths, activations = tuple(int(w) for w in widths), tuple(activations)
    n_layers = len(widths) - 1
    n_out = widths[-1]
    lines = _forward_lines(widths, activations)
    for j in range(n_out):
        lines.append(f"out[s * {n_out}LL + {j}] = a{n_layers}_{j};")
    sample_body = "\n        ".join(lines)
    name = _name("fused_forward_" + "_".join(map(str, widths)) + "_" + "_".join(activations), dtype)
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ X, {_param_list(n_layers)},
                                  real* __restrict__ out, const long long n) {{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x; s < n; s += stride) {{
        {sample_body}
    }}
}}
"""
    return preamble(dtype) + body, name
