"""What every CUDA source of the CuPy backend shares: launch shapes, limits, and the preamble.

The preamble declares ``real`` (``float`` or ``double``), the math macros of that type, the
activations ``f_<name>``/``d_<name>`` rendered from the rows of :mod:`mlp_accel.ops.table`,
and the warp and block sums the reducing kernels use.
"""

from __future__ import annotations

from ....ops import expr as E
from ....ops.table import ACTIVATION_ROWS

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "BLOCK",
    "COLSUM_BLOCK",
    "MAX_SOFTMAX_WIDTH",
    "CTYPE",
    "is_elementwise",
    "check_activation",
    "kernel_name",
    "preamble",
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

#: The C type behind ``real`` for each dtype the kernels support.
CTYPE = {"float32": "float", "float64": "double"}
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
    if dtype not in CTYPE:
        raise ValueError(f"fused CUDA kernels support float32 and float64, got {dtype!r}")


def kernel_name(base: str, dtype: str) -> str:
    """The kernel's C name: ``mlp_<base>_f32`` or ``..._f64`` (one name per source)."""
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
typedef {CTYPE[dtype]} real;
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


def check_activation(activation: str) -> None:
    """Raise ``ValueError`` unless the layer kernels can render ``activation``."""
    if not is_elementwise(activation):
        raise ValueError(f"no elementwise CUDA kernel for activation {activation!r}")
