"""CUDA sources of the per-layer hooks: bias + activation, output gradients, column sums.

Each function returns ``(source, kernel_name)`` for one dtype (and activation or loss); the
elementwise kernels loop grid-stride over the flat array, the softmax and cross-entropy
kernels take one thread per row, and the reductions write per-block partial sums that
:func:`sum_segments_source` adds in a fixed order.
"""

from __future__ import annotations

from ....ops import expr as E
from ....ops.table import loss_row
from .common import check_activation, kernel_name, preamble

__all__ = [
    "bias_activation_source",
    "bias_softmax_source",
    "output_gradient_source",
    "softmax_cross_entropy_source",
    "colsum_source",
    "sum_segments_source",
]


def bias_activation_source(activation: str, dtype: str) -> tuple[str, str]:
    """``z += b`` (row broadcast) in place and ``a = f(z)``, one pass.

    Arguments ``(z, b, a, rows, cols)``; the identity variant has no ``a`` (``a`` is ``z``).
    """
    check_activation(activation)
    name = kernel_name(f"bias_{activation}", dtype)
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
    name = kernel_name("bias_softmax", dtype)
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
    check_activation(activation)
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
    name = kernel_name(f"outgrad_{loss}_{activation}", dtype)
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
    name = kernel_name("outgrad_cross_entropy_softmax", dtype)
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
    check_activation(activation)
    name = kernel_name(f"colsum_{activation}", dtype)
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
    name = kernel_name("sum_segments", dtype)
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
