"""CUDA sources of the fused whole-network kernels: forward, loss and backward in one launch.

For small networks (every width <= :data:`MAX_FUSED_WIDTH`) one thread takes one sample at a
time through the whole network in straight-line code: activations live in registers as
``a{k}_{i}``, pre-activations as ``z{k}_{j}``, output gradients as ``dz{k}_{j}``, and each
thread sums its samples' gradients in ``g_0 ... g_P`` (``g_P`` is the loss). The training
source is rendered in parts: the forward pass (:func:`_forward_lines`, shared with the
inference kernel), the loss and output gradient (:func:`_loss_lines`), the backward pass
(:func:`_backward_lines`), and the block's reduction of the sums (:func:`_accumulators`).
"""

from __future__ import annotations

from ....ops import expr as E
from ....ops.layout import n_parameters, param_layout
from ....ops.table import ACTIVATION_ROWS, LOSS_ROWS, loss_row
from .common import BLOCK, CTYPE, is_elementwise, kernel_name, preamble

__all__ = [
    "MAX_FUSED_ACCUMULATOR_BYTES",
    "MAX_FUSED_WIDTH",
    "fused_supported",
    "fused_train_source",
    "fused_forward_source",
]

#: Largest per-thread gradient accumulator (bytes) of the fused whole-network kernel; beyond
#: it the accumulators spill out of registers and the layer-by-layer path is faster.
MAX_FUSED_ACCUMULATOR_BYTES = 1024
#: Widest layer of the fused whole-network kernel.
MAX_FUSED_WIDTH = 32


def fused_supported(widths: tuple[int, ...], activations: tuple[str, ...], loss: str, dtype: str):
    """Whether the fused whole-network kernel handles this network (small layers only)."""
    if dtype not in CTYPE or len(activations) != len(widths) - 1:
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


def _loss_lines(widths: tuple[int, ...], activations: tuple[str, ...], loss: str) -> list[str]:
    """One sample's loss, added to ``g_P``, and the output layer's ``dz{L}_j``.

    The loss is computed from the logits, as :mod:`mlp_accel.losses` does; a cross-entropy
    reuses the softmax's maximum ``m{L}`` and sum ``s{L}`` from the forward lines.
    """
    L = len(widths) - 1
    n_out = widths[-1]
    n_params = n_parameters(widths)
    out_act = activations[-1]
    lines = [f"const real y_{j} = Y[s * {n_out}LL + {j}];" for j in range(n_out)]
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
    return lines


def _offsets(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """Flat offsets ``(of W_k, of b_k)`` in the gradient vector ``[W1, b1, W2, b2, ...]``."""
    slots = param_layout(widths)
    return [(w.offset, b.offset) for w, b in zip(slots[0::2], slots[1::2])]


def _backward_lines(widths: tuple[int, ...], activations: tuple[str, ...]) -> list[str]:
    """Backward pass of one sample, from the output layer's ``dz{L}_j`` down.

    ``dW_k += a_{k-1} dz_k^T``, ``db_k += dz_k`` into the accumulators ``g_*`` (flat
    ``[W1, b1, W2, b2, ...]`` order), and ``dz_{k-1} = (dz_k W_k^T) * f'(z_{k-1})``.
    """
    lines = []
    offsets = _offsets(widths)
    for k in range(len(widths) - 1, 0, -1):
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
    return lines


def _accumulators(n_acc: int) -> tuple[str, str]:
    """The declarations of the ``n_acc`` per-thread sums, and their per-warp reduction into
    ``shared[warp * n_acc + k]``."""
    init = "\n    ".join(f"real g_{k} = (real)0;" for k in range(n_acc))
    reduce_lines = "\n    ".join(
        f"{{ const real v = warp_sum(g_{k}); if (lane == 0) shared[warp * {n_acc} + {k}] = v; }}"
        for k in range(n_acc)
    )
    return init, reduce_lines


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
    n_acc = n_parameters(widths) + 1
    lines = [
        *_forward_lines(widths, activations),
        *_loss_lines(widths, activations, loss),
        *_backward_lines(widths, activations),
    ]
    sample_body = "\n        ".join(lines)
    init, reduce_lines = _accumulators(n_acc)
    name = kernel_name(
        "fused_train_" + "_".join(map(str, widths)) + "_" + "_".join(activations) + "_" + loss,
        dtype,
    )
    n_warps = BLOCK // 32
    body = f"""
extern "C" __global__ void __launch_bounds__(256)
{name}(const real* __restrict__ X, const real* __restrict__ Y,
                                  {_param_list(len(widths) - 1)}, real* __restrict__ dst,
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
    name = kernel_name(
        "fused_forward_" + "_".join(map(str, widths)) + "_" + "_".join(activations), dtype
    )
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
