"""CUDA sources of the multi-tensor optimizer updates: SGD (plain, momentum, Nesterov), Adam.

One launch updates several tensors in place: the kernel is specialized on their sizes and
maps each flat index to its tensor by a chain of comparisons (:func:`_segment_dispatch`).
"""

from __future__ import annotations

from .common import kernel_name, preamble

__all__ = ["adam_source", "sgd_source"]


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
