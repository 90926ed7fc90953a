"""The Numba math helpers (mlp_accel/backends/numba/vecmath.py): accurate against NumPy/SciPy
float64 over dense grids with tails, NaN and inf; vectorized with no libm call left in the
loop; and what the renderer and the layer kernels make of them."""

from __future__ import annotations

import re

import numpy as np
import pytest

numba = pytest.importorskip("numba")
special = pytest.importorskip("scipy.special")

import mlp_accel as ma  # noqa: E402
from mlp_accel.backends.numba.kernels import (  # noqa: E402
    Constants,
    import_source,
    layer_module,
    module_header,
)
from mlp_accel.ops import expr as E  # noqa: E402
from mlp_accel.ops.table import ACTIVATION_ROWS, activation_row  # noqa: E402

#: helper -> (float64 reference, its domain, worst error in ulp of the result)
HELPERS = {
    "_exp": (np.exp, None, 2),
    "_expm1": (np.expm1, None, 3),
    "_log": (np.log, None, 2),
    "_log1p": (np.log1p, None, 3),
    "_tanh": (np.tanh, None, 4),
    "_erf": (special.erf, None, 4),
    "_exp_neg": (np.exp, (-np.inf, 0.0), 2),
    "_log1p_unit": (np.log1p, (0.0, 1.0), 2),
}

_LIBM_CALL = re.compile(r"call [^@\n]*@(llvm\.)?(exp|expm1|log|log1p|tanh|erf)(f|\.[\w.]+)?\(")
_VECTOR_MATH = re.compile(r"f(add|sub|mul|div)( \w+)* <\d+ x (float|double)>")


@pytest.fixture(scope="module", params=["float32", "float64"])
def helpers(request):
    """A generated module: the helpers, and per helper ``map_NAME(x, out)`` applying it
    elementwise in a loop compiled as the kernels' are (not cached, so its IR is there)."""
    dtype = request.param
    lines = module_header("tests/test_numba_math.py", dtype, Constants())
    for name in HELPERS:
        lines += [
            "",
            "",
            "@njit(fastmath=FASTMATH, error_model='numpy')",
            f"def map{name}(x, out):",
            "    for i in range(x.shape[0]):",
            f"        out[i] = {name}(x[i])",
        ]
    return dtype, import_source("\n".join(lines) + "\n", "mlp_accel_test_math")


def _grid(dtype: str, domain: tuple[float, float] | None) -> np.ndarray:
    """Dense where the functions bend, geometric out to the largest float and down through
    the subnormals, both signs, and the special values."""
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    with np.errstate(over="ignore"):
        magnitudes = np.geomspace(tiny, float(info.max), 40_001)
        x = np.concatenate(
            [
                np.linspace(-6.0, 6.0, 120_001),
                np.linspace(-800.0, 800.0, 80_001),
                magnitudes,
                -magnitudes,
                [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan],
            ]
        ).astype(dtype)
    if domain is not None:
        x = x[~((x < domain[0]) | (x > domain[1]))]  # NaN kept
    return x


def _ulps(got: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    """|got - ref| in units of the last place of ``ref`` rounded to ``dtype``."""
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


@pytest.mark.parametrize("name", list(HELPERS))
def test_helper_is_accurate_with_libm_special_values(helpers, name):
    dtype, module = helpers
    reference, domain, worst = HELPERS[name]
    x = _grid(dtype, domain)
    got = np.empty_like(x)
    getattr(module, "map" + name)(x, got)
    with np.errstate(all="ignore"):
        ref = reference(x.astype(np.float64))
        rounded = ref.astype(dtype)
    # NaN where libm gives NaN, the same infinities, overflow and underflow at the same place
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded))
    special_values = ~np.isfinite(rounded) | (rounded == 0) | ~np.isfinite(got)
    np.testing.assert_array_equal(got[special_values], rounded[special_values])
    finite = ~special_values
    ulps = _ulps(got[finite], ref[finite], dtype)
    at = x[finite][np.argmax(ulps)]
    assert ulps.max() <= worst, f"{name} is {ulps.max():.1f} ulp off at {at!r} ({dtype})"


def test_erf_absolute_error(helpers):
    """The target: erf within about 1e-7 in float32 and 1e-15 in float64, absolutely."""
    dtype, module = helpers
    x = _grid(dtype, None)
    got = np.empty_like(x)
    module.map_erf(x, got)
    ref = special.erf(x.astype(np.float64))
    finite = np.isfinite(x)
    error = np.abs(got[finite] - ref[finite]).max()
    assert error <= (1.2e-7 if dtype == "float32" else 1e-15), error
    assert got[-3] == 1.0 and got[-2] == -1.0 and np.isnan(got[-1])  # inf, -inf, NaN


@pytest.mark.parametrize("name", list(HELPERS))
def test_helper_loop_vectorizes_without_libm(helpers, name):
    """A libm call (math.tanh: tanhf; math.exp: the llvm.exp intrinsic, scalarized into
    expf calls) or a helper LLVM would not inline keeps the sample loop scalar."""
    dtype, module = helpers
    kernel = getattr(module, "map" + name)
    x = np.linspace(-3, 3, 64).astype(dtype)
    kernel(x, np.empty_like(x))
    ir = kernel.inspect_llvm(kernel.signatures[0])
    assert not _LIBM_CALL.search(ir), _LIBM_CALL.search(ir).group(0)
    assert _VECTOR_MATH.search(ir), f"the loop over {name} did not vectorize ({dtype})"


def test_renderer_calls_helpers_for_every_transcendental():
    rendered = E.to_python(
        E.parse("exp(z) + expm1(z) + log(z) + log1p(z) + tanh(z) + erf(z) + sqrt(z)"),
        {"z": "v"},
        repr,
    )
    for name in ("_exp(v)", "_expm1(v)", "_log(v)", "_log1p(v)", "_tanh(v)", "_erf(v)"):
        assert name in rendered
    assert re.findall(r"math\.\w+", rendered) == ["math.sqrt"]  # an intrinsic: vectorizes
    source = "\n".join(module_header("t", "float32", Constants()))
    for helper in set(E.PYTHON_FUNCTIONS.values()) - {"abs", "math.sqrt"}:
        assert f"def {helper}(" in source, helper


MISH = "z * tanh(maximum(z, 0) + log1p(exp(-abs(z))))"


@pytest.fixture(scope="module")
def registered() -> list[str]:
    ma.register_activation("mish_math_test", MISH)
    ma.register_activation("erf_math_test", "erf(z) + log(1 + z * z) - expm1(-abs(z))")
    return ["mish_math_test", "erf_math_test"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_kernels_match_numpy_float64_over_the_range(dtype, registered):
    """Every elementwise row's rendered f and f' (built-in and registered) against the
    NumPy float64 reference, z from -60 to 60 with the infinities and NaN."""
    # (the identity kernel leaves a alone: a is z)
    names = [
        n
        for n, row in ACTIVATION_ROWS.items()
        if row.elementwise and row.builtin and n != "identity"
    ]
    z0 = np.concatenate([np.linspace(-60, 60, 4001), [np.inf, -np.inf, np.nan]])
    z0 = z0.astype(dtype).astype(np.float64)
    rtol = 4e-6 if dtype == "float32" else 1e-13
    for name in names + registered:
        row = activation_row(name)
        kernels = layer_module(name, dtype)
        z = z0.reshape(-1, 1).astype(dtype)
        a = np.empty_like(z)
        with np.errstate(all="ignore"):
            kernels.dense_forward(z, np.zeros(1, dtype), a)
            grad = np.ones_like(z)
            dz = np.empty_like(z)
            kernels.dense_backward(grad, z, a, dz, np.zeros(1, dtype))
            ref_a = E.evaluate(row.forward_tree, {"z": z0}, np)
            ref_d = E.evaluate(row.derivative_tree, {"z": z0, "a": ref_a}, np)
        for got, ref, what in ((a.ravel(), ref_a, "f"), (dz.ravel(), ref_d, "f'")):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name} {what}")
            finite = np.isfinite(ref)
            np.testing.assert_array_equal(got[~finite], ref[~finite], err_msg=f"{name} {what}")
            scale = np.maximum(np.abs(ref[finite]), 1.0)  # cancellation: 1 + erf(-40) is 0
            err = np.abs(got[finite] - ref[finite]) / scale
            assert err.max() <= rtol, f"{name} {what} ({dtype}): {err.max():.2e}"


def test_mish_kernel_has_no_libm_call():
    """The registered mish of issue #12 renders to helpers only (it ran 14-235x relu's step
    time on scalar libm calls)."""
    ma.register_activation("mish_render_test", MISH)
    row = activation_row("mish_render_test")
    text = E.to_python(row.forward_tree, {"z": "v"}, repr) + E.to_python(
        row.derivative_tree, {"z": "v", "a": "a"}, repr
    )
    assert "math." not in text and "_tanh(" in text and "_log1p(" in text


def test_generated_kernel_sources_call_no_scalar_libm(registered):
    """Every layer and output module renders its per-element transcendentals to helpers
    (the per-layer softmax and log-sum-exp used math.exp per element)."""
    from mlp_accel.backends.base import NetworkSpec
    from mlp_accel.backends.numba.fused import generate_source
    from mlp_accel.backends.numba.layer_sources import layer_source, output_source
    from mlp_accel.ops.table import LOSS_ROWS

    per_element = re.compile(r"math\.(exp|expm1|log1p|tanh|erf)\(")
    sources = [layer_source(name, "float32") for name in [*ACTIVATION_ROWS, *registered]]
    for loss, row in LOSS_ROWS.items():
        outputs = [row.requires] if row.requires else ["identity", "tanh", *registered]
        sources += [output_source(loss, out, "float32") for out in outputs]
    spec = NetworkSpec((3, 5, 2), (registered[1], "softmax"), "cross_entropy", "float32")
    sources.append(generate_source(spec))
    for source in sources:
        assert not per_element.search(source), per_element.search(source).group(0)


def test_fused_kernel_of_a_transcendental_heavy_activation_calls_libm(registered):
    """In a fused kernel LLVM leaves mish's 14 helper calls per unit as calls, and a scalar
    helper call costs more than libm's (the fused step ran 2.3x main's): libm there, helpers
    everywhere else."""
    from mlp_accel.backends.base import NetworkSpec
    from mlp_accel.backends.numba.fused import generate_source
    from mlp_accel.backends.numba.kernels import FUSED_HELPER_CALLS
    from mlp_accel.backends.numba.layer_sources import layer_source

    def calls(name: str, source: str) -> int:
        return len(re.findall(rf"(?<!def )(?<![.\w]){name}\(", source))

    mish, bce = registered[0], "binary_cross_entropy"
    fused = generate_source(NetworkSpec((2, 4, 1), (mish, "sigmoid"), bce, "float32"))
    assert "math.tanh(" in fused and calls("_tanh", fused) == 0
    layers = layer_source(mish, "float32")
    assert "math.tanh(" not in layers and calls("_tanh", layers) > 0
    light = generate_source(NetworkSpec((2, 4, 1), ("gelu", "sigmoid"), bce, "float32"))
    assert calls("_erf", light) > 0 and "math.erf(" not in light
    assert FUSED_HELPER_CALLS < 14


def test_registered_relu_renders_the_builtin_kernels():
    """Issue #12: registered ``maximum(z, 0)`` ran 1.44x built-in relu's step. Not the
    rendering: both give the same kernels, line for line, apart from the title line."""
    from mlp_accel.backends.base import NetworkSpec
    from mlp_accel.backends.numba.fused import generate_source
    from mlp_accel.backends.numba.layer_sources import layer_source

    ma.register_activation("relu_render_test", "maximum(z, 0)")

    def body(source: str) -> list[str]:
        return source.splitlines()[1:]

    for dtype in ("float32", "float64"):
        assert body(layer_source("relu_render_test", dtype)) == body(layer_source("relu", dtype))
        specs = [
            NetworkSpec((2, 4, 3, 1), (act, act, "sigmoid"), "binary_cross_entropy", dtype)
            for act in ("relu_render_test", "relu")
        ]
        assert body(generate_source(specs[0])) == body(generate_source(specs[1]))


def test_fused_kernels_with_helpers_or_libm_match_numpy(registered, rng):
    """Fused kernels rendered with the helpers (silu) and with libm (mish) against NumPy
    float64 (every helper is checked over its range in the layer kernels above; gelu's
    inlined erf would triple this fused kernel's compile)."""
    from .test_numba_backend import _backend, _compare

    backend = _backend("specialized")
    for act in ["silu", registered[0]]:
        model = _compare([3, 5, 2], [act, "softmax"], "cross_entropy", "float64", backend, rng)
        assert model._fused_network() is not None, act
