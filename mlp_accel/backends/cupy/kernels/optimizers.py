"""CUDA sources of the multi-tensor optimizer updates: SGD (plain, momentum, Nesterov) and
Adam written by hand, and the rules of the optimizer table (:mod:`mlp_accel.ops.optimizers`)
rendered from their expressions.

One launch updates several tensors in place: the kernel is specialized on their sizes and
maps each flat index to its tensor by a chain of comparisons (:func:`_segment_dispatch`).
A layer-wise rule takes three launches: :func:`table_first_source` (one row of blocks per
tensor: the state update and the per-block float64 sums of ``p * p`` and ``u * u``), the
segment sums of those partial sums (:func:`~.layers.sum_segments_source`, a fixed order),
and :func:`table_second_source` (the step, scaled by the ratio of the tensor's sums).
"""

from __future__ import annotations

from ....ops import expr as E
from ....ops.optimizers import OptimizerRow, optimizer_row
from .common import kernel_name, preamble

__all__ = [
    "adam_source",
    "sgd_source",
    "table_update_source",
    "table_first_source",
    "table_second_source",
    "first_pass_blocks",
]


def _segment_dispatch(
    sizes: tuple[int, ...], names: tuple[str, ...], index: str | None = None
) -> str:
    """Code that points ``<name>`` at tensor k's ``<name>k`` and sets ``j`` for flat index ``i``
    (and ``<index>`` to k, where given)."""
    lines = []
    offset = 0
    for k, size in enumerate(sizes):
        end = offset + size
        cond = f"if (i < {end}LL)" if k < len(sizes) - 1 else ""
        prefix = "" if k == 0 else "else "
        assign = " ".join(f"{n} = {n}{k};" for n in names)
        if index is not None:
            assign += f" {index} = {k};"
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
    name = kernel_name("adam_" + "_".join(map(str, sizes)), dtype)
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
    name = kernel_name(f"sgd_{variant}_" + "_".join(map(str, sizes)), dtype)
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


# -- the optimizer table ---------------------------------------------------------------------
#: Most blocks per tensor of a layer-wise rule's first pass (its partial sums per tensor).
_FIRST_PASS_BLOCKS = 64


def first_pass_blocks(sizes: tuple[int, ...]) -> int:
    """Blocks per tensor of a layer-wise first pass: enough for the largest tensor, at most
    :data:`_FIRST_PASS_BLOCKS`. A function of the sizes alone, so the sums' order is too."""
    return max(1, min(-(-max(sizes) // 256), _FIRST_PASS_BLOCKS))


def _table_names(row: OptimizerRow) -> dict[str, str]:
    """C names of the rule's variables: ``e_`` elements and locals, ``c_`` step scalars,
    ``t_`` tensor scalars."""
    names = {name: f"c_{name}" for name in (*row.scalars, "s")}
    names.update({name: f"t_{name}" for name in row.tensor_scalars})
    names.update({"wsq": "r_wsq", "usq": "r_usq"})
    for target, _ in (*row.update, *row.apply):
        names.setdefault(target, f"e_{target}")
    names.update({name: f"e_{name}" for name in ("p", "g", *row.state, "u")})
    return names


def _table_params(row: OptimizerRow, n: int) -> str:
    """Per tensor ``k``: its pointers ``a_<array>k`` (the gradient const), then its scalars;
    then the step's scalars."""
    per_tensor = []
    for k in range(n):
        per_tensor += [f"real* __restrict__ a_p{k}", f"const real* __restrict__ a_g{k}"]
        per_tensor += [f"real* __restrict__ a_{name}{k}" for name in row.state]
        per_tensor += [f"const real t_{name}{k}" for name in row.tensor_scalars]
    return ", ".join(per_tensor + [f"const real c_{name}" for name in row.scalars])


def _table_declarations(row: OptimizerRow) -> str:
    pointers = "real* a_p; const real* a_g; " + " ".join(f"real* a_{n};" for n in row.state)
    scalars = " ".join(f"real t_{n};" for n in row.tensor_scalars)
    return f"{pointers} {scalars} long long j;"


def _table_dispatch_names(row: OptimizerRow) -> tuple[str, ...]:
    return ("a_p", "a_g", *(f"a_{n}" for n in row.state), *(f"t_{n}" for n in row.tensor_scalars))


def _table_body(row: OptimizerRow, trees: list, assignments: tuple, before: str = "") -> str:
    """Loads of what ``trees`` read, ``before``, the assignments, stores of what they write."""
    names = _table_names(row)
    lines = [f"real e_{name} = a_{name}[j];" for name in row.reads(trees)]
    if before:
        lines.append(before)
    lines += [f"{names[t]} = {E.to_cuda(tree, names)};" for t, tree in assignments]
    written = {t for t, _ in assignments}
    lines += [f"a_{n}[j] = e_{n};" for n in (*row.state, "p") if n in written]
    locals_ = sorted({t for t, _ in assignments} - {"p", *row.state})
    decl = "".join(f"real e_{name}; " for name in locals_)
    return "\n        ".join(([decl] if decl else []) + lines)


def _grid_stride(name: str, params: str, total: int, decl: str, dispatch: str, body: str) -> str:
    return f"""
extern "C" __global__ void __launch_bounds__(256)
{name}({params}) {{
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = first; i < {total}LL; i += stride) {{
        {decl}
        {dispatch}
        {body}
    }}
}}
"""


def table_update_source(rule: str, sizes: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """An elementwise rule of the optimizer table on several tensors in one launch, in place.

    Arguments: per tensor its pointers (``p``, ``g``, the state) and tensor scalars, then the
    rule's scalars (:func:`_table_params`).
    """
    _check_sizes(sizes)
    row = optimizer_row(rule)
    if row.layerwise:
        raise ValueError(f"{rule} is layer-wise: it takes the two-pass kernels")
    name = kernel_name(f"opt_{rule}_" + "_".join(map(str, sizes)), dtype)
    trees = [tree for _, tree in row.update_trees]
    dispatch = _segment_dispatch(tuple(sizes), _table_dispatch_names(row))
    body = _table_body(row, trees, row.update_trees)
    params = _table_params(row, len(sizes))
    source = _grid_stride(name, params, sum(sizes), _table_declarations(row), dispatch, body)
    return preamble(dtype) + source, name


_DOUBLE_SUMS = """
// Sums of doubles over a warp and over a 1-D block (every thread calls; thread 0 holds the
// result), in a fixed order: the float64 norms of the layer-wise rules. Guarded, so that
// several first passes can share one translation unit.
#ifndef MLP_DOUBLE_SUMS
#define MLP_DOUBLE_SUMS
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    return v;
}

__device__ __forceinline__ double block_sum_d(double v, double* shared) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[threadIdx.x] : 0.0;
    if (warp == 0) v = warp_sum_d(v);
    return v;
}
#endif
"""


def table_first_source(rule: str, sizes: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """The first pass of a layer-wise rule: state update, and per-block float64 sums of
    ``p * p`` and ``u * u``.

    Launched on a ``(blocks, len(sizes))`` grid, block ``(b, k)`` striding over tensor ``k``;
    arguments as :func:`table_update_source`'s, then ``double* partial``, where it writes
    ``partial[(2k) * blocks + b]`` (the sum of ``p * p``) and ``partial[(2k + 1) * blocks + b]``.
    """
    _check_sizes(sizes)
    row = optimizer_row(rule)
    if not row.layerwise or row.direction_tree is None:
        raise ValueError(f"{rule} is not layer-wise")
    name = kernel_name(f"opt_{rule}_first_" + "_".join(map(str, sizes)), dtype)
    names = _table_names(row)
    cases = []
    for k, size in enumerate(sizes):
        assign = " ".join(f"{n} = {n}{k};" for n in _table_dispatch_names(row))
        cases.append(f"case {k}: {assign} n = {size}LL; break;")
    trees = [tree for _, tree in row.update_trees] + [row.direction_tree, E.Var("p")]
    direction = E.to_cuda(row.direction_tree, names)
    body = _table_body(row, trees, row.update_trees)
    decl = _table_declarations(row).replace(" long long j;", " long long n = 0;")
    source = f"""{_DOUBLE_SUMS}
extern "C" __global__ void __launch_bounds__(256)
{name}({_table_params(row, len(sizes))}, double* __restrict__ partial) {{
    __shared__ double shared_w[32];
    __shared__ double shared_u[32];
    {decl}
    switch (blockIdx.y) {{
        {(chr(10) + "        ").join(cases)}
    }}
    double wsq = 0.0, usq = 0.0;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {{
        {body}
        const real e_u = {direction};
        wsq += (double)(e_p * e_p);
        usq += (double)(e_u * e_u);
    }}
    wsq = block_sum_d(wsq, shared_w);
    usq = block_sum_d(usq, shared_u);
    if (threadIdx.x == 0) {{
        partial[(2LL * blockIdx.y) * gridDim.x + blockIdx.x] = wsq;
        partial[(2LL * blockIdx.y + 1) * gridDim.x + blockIdx.x] = usq;
    }}
}}
"""
    return preamble(dtype) + source, name


def table_second_source(rule: str, sizes: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """The second pass of a layer-wise rule, one launch over several tensors: ``u`` again from
    the new state, the tensor's step scalar ``s`` (the rule's ratio of its sums, evaluated in
    ``real``) and the ``apply`` assignments.

    Arguments as :func:`table_update_source`'s, then ``const double* sums``: the sums of
    ``p * p`` and ``u * u`` of tensor ``k`` at ``2k`` and ``2k + 1``.
    """
    _check_sizes(sizes)
    row = optimizer_row(rule)
    if row.direction_tree is None or row.ratio_tree is None:
        raise ValueError(f"{rule} is not layer-wise")
    name = kernel_name(f"opt_{rule}_second_" + "_".join(map(str, sizes)), dtype)
    names = _table_names(row)
    dispatch = _segment_dispatch(tuple(sizes), _table_dispatch_names(row), index="k")
    trees = [row.direction_tree, *(tree for _, tree in row.apply_trees)]
    before = (
        "const real r_wsq = (real)sums[2 * k], r_usq = (real)sums[2 * k + 1];\n        "
        f"const real c_s = {E.to_cuda(row.ratio_tree, names)};\n        "
        f"const real e_u = {E.to_cuda(row.direction_tree, names)};"
    )
    body = _table_body(row, trees, row.apply_trees, before)
    params = f"{_table_params(row, len(sizes))}, const double* __restrict__ sums"
    decl = _table_declarations(row) + " int k = 0;"
    source = _grid_stride(name, params, sum(sizes), decl, dispatch, body)
    return preamble(dtype) + source, name
