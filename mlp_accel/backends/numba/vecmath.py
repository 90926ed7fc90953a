"""Elementwise math that vectorizes: the helpers every generated Numba module defines.

Numba compiles ``math.exp``, ``math.log1p``, ``math.tanh``, ``math.erf`` and their kin to
calls of libm, one element at a time (there is no SVML without Intel's runtime), and LLVM does
not vectorize a loop around a call it cannot see into: an activation that called them ran its
whole sample loop scalar. The helpers here are arithmetic, bit operations and selects only;
they inline into the caller's loop and vectorize with it. The expression renderer
(:func:`mlp_accel.ops.expr.to_python`) calls them for every transcendental of the language
(``sqrt`` stays ``math.sqrt``: it is an LLVM intrinsic that vectorizes as it is).

- ``_exp``, ``_expm1``: Cody-Waite reduction ``x = k ln2 + r``, ``|r| <= ln2 / 2``, a Taylor
  polynomial of ``exp(r)`` (``expm1(r)`` without its leading 1), and ``2**k`` from bits, as
  two factors so that subnormal results round once; ``expm1`` adds ``2**k - 1`` exactly, so
  it is exact near 0. ``_exp_neg`` is ``_exp`` for ``x <= 0`` (the sigmoid's form).
- ``_log``, ``_log1p``: fdlibm's kernel ``log1p(f)`` for ``f`` in ``[sqrt(1/2) - 1,
  sqrt(2) - 1]`` after splitting off the exponent; ``_log1p`` adds the rounding error of
  ``1 + x`` back (fdlibm's correction). ``_log1p_unit`` is ``_log1p`` on ``[0, 1]``.
- ``_tanh``: ``-expm1(-2|x|) / (2 + expm1(-2|x|))`` with the sign of ``x``: no overflow and
  no cancellation near 0.
- ``_erf``: ``x * h(x**2)`` for ``|x| < 1`` and ``1 - exp(-x**2) * g(2 / (2 + |x|))``
  beyond, ``h`` and ``g`` Chebyshev interpolants (of ``erf(x) / x`` and of
  ``erfc(x) exp(x**2)``) evaluated by Clenshaw's recurrence.

Measured against float64 NumPy/SciPy and ``math`` over dense grids (tests/test_numba_math.py):
within a few ulp everywhere (``_erf``: absolute error below 1e-7 in float32 and 1e-15 in
float64), NaN in gives NaN out, and infinities, zeros and the limits of the range give
libm's values. The helpers are compiled without fastmath: reassociation would undo the
Cody-Waite reduction and the compensated sums.
"""

from __future__ import annotations

import math

from ...ops.expr.erf_series import ERF_HEAD, ERF_MAX, ERF_TAIL

__all__ = ["HELPER_DTYPES", "math_helpers"]

# Per dtype: integer type, exponent bias, mantissa bits, ln2 split in a head that multiplies
# any exponent exactly and a tail, the clamps of exp's argument (below: the result rounds to 0;
# above: it overflows) and the Taylor degree that reaches the dtype's precision on
# |r| <= ln2 / 2.
_FLOAT = {
    "float64": dict(
        itype="int64",
        bias=1023,
        bits=52,
        ln2_hi=6.9314718036912382e-01,
        ln2_lo=1.9082149292705877e-10,
        exp_min=-745.2,
        exp_max=709.782712893384,  # log(the largest float64)
        expm1_min=-40.0,  # expm1 rounds to -1 below about -37.4
        degree=13,
        neg_degree=13,
        min_normal=2.2250738585072014e-308,
        subnormal_shift=54,
        one_bits=0x3FF0000000000000,
        sqrt_half_bits=0x3FE6A09E667F3BCD,
        mantissa_mask=0x000FFFFFFFFFFFFF,
        erf_max=ERF_MAX["float64"],  # erf rounds to 1 above about 5.9
    ),
    "float32": dict(
        itype="int32",
        bias=127,
        bits=23,
        ln2_hi=0.693145751953125,
        ln2_lo=1.4286068203094172e-06,
        exp_min=-104.0,
        exp_max=88.72283935546875,  # float32(log(the largest float32))
        expm1_min=-18.0,  # expm1 rounds to -1 below about -17.3
        degree=8,
        neg_degree=7,  # _exp_neg's, as the sigmoid has always had it
        min_normal=1.1754943508222875e-38,
        subnormal_shift=25,
        one_bits=0x3F800000,
        sqrt_half_bits=0x3F3504F3,
        mantissa_mask=0x007FFFFF,
        erf_max=ERF_MAX["float32"],  # erf rounds to 1 above about 3.9
    ),
}

#: The dtypes the helpers (and so the generated kernels) are written for.
HELPER_DTYPES = tuple(_FLOAT)

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

_DECORATOR = "@njit(cache=True, error_model='numpy')"


# Numba inlines these before LLVM sees them: they are over LLVM's inlining threshold, and a
# call left in the loop would keep it scalar.
_INLINE = {"_expm1", "_erf"}


def _function(signature: str, doc: str, body: list[str]) -> list[str]:
    """Source lines of one helper (two blank lines, decorator, docstring, body)."""
    decorator = _DECORATOR
    if signature.split("(")[0] in _INLINE:
        decorator = decorator[:-1] + ", inline='always')"
    return ["", "", decorator, f"def {signature}:", f'    """{doc}"""', *("    " + b for b in body)]


def _dt(value: float) -> str:
    return f"DT({value!r})"


def _clenshaw(coeffs: tuple[float, ...], u: str, out: str) -> list[str]:
    """Lines setting ``out`` to ``sum_j coeffs[j] T_j(u)`` (Clenshaw's recurrence)."""
    n = len(coeffs)
    lines = [f"u2 = {u} + {u}", f"b{n - 1} = {_dt(coeffs[-1])}"]
    prev2 = "_0"
    for j in range(n - 2, 0, -1):
        lines.append(f"b{j} = u2 * b{j + 1} - {prev2} + {_dt(coeffs[j])}")
        prev2 = f"b{j + 1}"
    lines.append(f"{out} = {u} * b1 - {prev2} + {_dt(coeffs[0])}")
    return lines


def _exp_family(c: dict) -> list[str]:
    """``_pow2``, ``_round``, ``_exp_neg`` (unchanged from the sigmoid's), ``_exp``,
    ``_expm1`` and ``_expm1_neg``."""
    it = f"np.{c['itype']}"
    degree = c["degree"]
    # Taylor series of exp(r) - 1 - r, divided by r^2: 1/2 + r/6 + ... (Horner)
    tail = _dt(1.0 / math.factorial(degree))
    for n in range(degree - 1, 1, -1):
        tail = f"{_dt(1.0 / math.factorial(n))} + r * ({tail})"
    reduce = [
        "kf = DT(k)",
        f"r = (xc - kf * {_dt(c['ln2_hi'])}) - kf * {_dt(c['ln2_lo'])}",
    ]
    lines = _function(
        "_pow2(k)",
        "2.0 ** k for an integer k of the normal exponent range, from its bits.",
        [f"return {it}({it}(k + {it}({c['bias']})) << {it}({c['bits']})).view(DT)"],
    )
    lines += _function(
        "_round(t)",
        "t rounded to the nearest integer (halves away from 0); 0 for NaN.",
        ["h = _HALF if t >= _0 else -_HALF", f"return {it}(t + h) if t == t else {it}(0)"],
    )
    lines += _exp_neg(c)
    lines += _function(
        "_exp(x)",
        "exp(x): 0 below the float's range, inf above it, NaN for NaN.",
        [
            f"xc = {_dt(c['exp_min'])} if x < {_dt(c['exp_min'])} else x",
            f"xc = {_dt(c['exp_max'])} if xc > {_dt(c['exp_max'])} else xc",
            f"k = _round(xc * {_dt(1.0 / math.log(2.0))})",
            *reduce,
            f"p = _1 + r * (_1 + r * ({tail}))",
            f"k1 = {it}(k >> {it}(1))",
            "y = (p * _pow2(k1)) * _pow2(k - k1)  # two factors: subnormals round once",
            f"y = _0 if x < {_dt(c['exp_min'])} else y",
            f"return _M_INF if x > {_dt(c['exp_max'])} else y",
        ],
    )
    expm1_core = [
        f"k = _round(xc * {_dt(1.0 / math.log(2.0))})",
        *reduce,
        f"q = r + (r * r) * ({tail})  # expm1(r)",
    ]
    cap = c["bits"] + 3  # from here 2**k - 1 rounds to 2**k: one form for every larger k
    lines += _function(
        "_expm1(x)",
        "expm1(x), exact near 0: -1 far below 0, inf above the range, NaN for NaN.",
        [
            f"xc = {_dt(c['expm1_min'])} if x < {_dt(c['expm1_min'])} else x",
            f"xc = {_dt(c['exp_max'])} if xc > {_dt(c['exp_max'])} else xc",
            *expm1_core,
            f"small = k < {it}({cap})",
            f"s = _pow2(k if small else {it}({cap}))",
            "y = s * q + (s - _1)  # 2**k (1 + q) - 1, s * q and s - 1 exact",
            f"k1 = {it}(k >> {it}(1))",
            "big = ((q + _1) * _pow2(k1)) * _pow2(k - k1) - _1",
            "y = y if small else big",
            f"y = -_1 if x < {_dt(c['expm1_min'])} else y",
            f"return _M_INF if x > {_dt(c['exp_max'])} else y",
        ],
    )
    lines += _function(
        "_expm1_neg(x)",
        "expm1(x) for x <= 0 (NaN stays NaN).",
        [
            f"xc = {_dt(c['expm1_min'])} if x < {_dt(c['expm1_min'])} else x",
            *expm1_core,
            "s = _pow2(k)",
            "y = s * q + (s - _1)",
            f"return -_1 if x < {_dt(c['expm1_min'])} else y",
        ],
    )
    return lines


def _exp_neg(c: dict) -> list[str]:
    """``_exp_neg``: the sigmoid's exp(x) for x <= 0, as it has always been rendered."""
    it = f"np.{c['itype']}"
    xmin, degree = c["exp_min"], c["neg_degree"]
    horner = f"DT({1.0 / math.factorial(degree)!r})"  # Taylor series of exp(r), |r| <= ln2 / 2
    for n in range(degree - 1, 1, -1):
        horner = f"DT({1.0 / math.factorial(n)!r}) + r * ({horner})"
    horner = f"_1 + r * (_1 + r * ({horner}))"
    bias, bits = c["bias"], c["bits"]
    return [
        "",
        "",
        _DECORATOR,
        "def _exp_neg(x):",
        '    """exp(x) for x <= 0 (NaN stays NaN), subnormal results included, as libm\'s."""',
        f"    xc = DT({xmin!r}) if x < DT({xmin!r}) else x",
        f"    t = xc * DT({1.0 / math.log(2.0)!r})",
        f"    k = {it}(t - _HALF) if t == t else {it}(0)  # round half down; t <= 0",
        "    kf = DT(k)",
        f"    r = (xc - kf * DT({c['ln2_hi']!r})) - kf * DT({c['ln2_lo']!r})",
        f"    p = {horner}",
        # 2**k as two normal factors, so results below the normal range round gradually
        f"    k1 = k >> {it}(1)",
        f"    s1 = {it}((k1 + {it}({bias})) << {it}({bits})).view(DT)",
        f"    s2 = {it}((k - k1 + {it}({bias})) << {it}({bits})).view(DT)",
        f"    return _0 if x < DT({xmin!r}) else (p * s1) * s2",
    ]


def _log_family(c: dict) -> list[str]:
    """``_log1p_core``, ``_log1p_unit``, ``_log`` and ``_log1p``."""
    it, dt = f"np.{c['itype']}", c["itype"].replace("int", "float")
    lg = [_dt(v) for v in _LG]
    offset = c["one_bits"] - c["sqrt_half_bits"]
    # the exponent and mantissa of u > 0 with the mantissa m in [sqrt(1/2), sqrt(2))
    split = [
        f"i = {it}(np.{dt}(u).view({it}) + {it}({offset}))",
        f"m = {it}((i & {it}({c['mantissa_mask']})) + {it}({c['sqrt_half_bits']})).view(DT)",
    ]
    lines = _function(
        "_log1p_core(f, kf, c)",
        "kf ln2 + log1p(f) + c for f in [sqrt(1/2) - 1, sqrt(2) - 1] (fdlibm's kernel).",
        [
            "s = f / (DT(2.0) + f)",
            "z = s * s",
            "w = z * z",
            f"t1 = w * ({lg[1]} + w * ({lg[3]} + w * {lg[5]}))",
            f"t2 = z * ({lg[0]} + w * ({lg[2]} + w * ({lg[4]} + w * {lg[6]})))",
            "hfsq = _HALF * f * f",
            f"low = s * (hfsq + t1 + t2) + (kf * {_dt(c['ln2_lo'])} + c)",
            f"return kf * {_dt(c['ln2_hi'])} - ((hfsq - low) - f)",
        ],
    )
    lines += _function(
        "_log1p_unit(e)",
        "log1p(e) for 0 <= e <= 1 (NaN stays NaN).",
        [
            f"big = e > {_dt(math.sqrt(2.0) - 1.0)}",
            "f = (e - _1) * _HALF if big else e  # log1p(e) = k ln2 + log1p(f)",
            "return _log1p_core(f, _1 if big else _0, _0)",
        ],
    )
    shift = c["subnormal_shift"]
    lines += _function(
        "_log(x)",
        "log(x): -inf at 0, NaN below 0 and for NaN, inf at inf.",
        [
            f"tiny = x < {_dt(c['min_normal'])}",
            f"u = x * {_dt(2.0**shift)} if tiny else x  # subnormals scaled to normal",
            *split,
            f"k = {it}((i >> {it}({c['bits']})) - {it}({c['bias']}))",
            f"k = {it}(k - {it}({shift})) if tiny else k",
            "y = _log1p_core(m - _1, DT(k), _0)",
            "y = y if x < _M_INF else x  # inf and NaN",
            "y = -_M_INF if x == _0 else y",
            "return _M_NAN if x < _0 else y",
        ],
    )
    lines += _function(
        "_log1p(x)",
        "log1p(x): -inf at -1, NaN below -1 and for NaN, inf at inf.",
        [
            "u = _1 + x",
            *split,
            f"k = {it}((i >> {it}({c['bits']})) - {it}({c['bias']}))",
            f"exact = k == {it}(0)  # 1 + x in [sqrt(1/2), sqrt(2)): f = x exactly",
            "f = x if exact else m - _1",
            # the rounding error of u = 1 + x, added back as log(1 + e / u) ~ e / u
            f"e = (_1 - (u - x)) if k > {it}(0) else (x - (u - _1))",
            "c = _0 if exact else e / u",
            "y = _log1p_core(f, DT(k), c)",
            "y = y if x < _M_INF else x  # inf and NaN",
            "y = -_M_INF if x == -_1 else y",
            "return _M_NAN if x < -_1 else y",
        ],
    )
    return lines


def _tanh_erf(c: dict, dtype: str) -> list[str]:
    """``_tanh`` and ``_erf``."""
    lines = _function(
        "_tanh(x)",
        "tanh(x) from expm1(-2|x|): no overflow, no cancellation near 0, NaN for NaN.",
        [
            "e = _expm1_neg(DT(-2.0) * abs(x))",
            "return math.copysign(-e / (DT(2.0) + e), x)",
        ],
    )
    top = c["erf_max"]
    ta, tb = 2.0 / 3.0, 2.0 / (2.0 + top)  # t = 2 / (2 + x) at x = 1 and x = top
    lines += _function(
        "_erf(x)",
        "erf(x): x h(x^2) below 1, 1 - exp(-x^2) g(x) above (Chebyshev), NaN for NaN.",
        [
            "ax = abs(x)",
            "w = DT(2.0) * (x * x) - _1",
            *_clenshaw(ERF_HEAD[dtype], "w", "h"),
            "head = x * h",
            f"xc = ax if ax < {_dt(top)} else {_dt(top)}",
            "xc = _1 if xc < _1 else xc",
            "t = DT(2.0) / (DT(2.0) + xc)",
            f"v = t * {_dt(2.0 / (tb - ta))} - {_dt((ta + tb) / (tb - ta))}",
            *_clenshaw(ERF_TAIL[dtype], "v", "g"),
            "erfc = _exp_neg(-(xc * xc)) * g",
            "tail = math.copysign(_1 - erfc, x)",
            "y = head if ax < _1 else tail",
            "return y if x == x else x",
        ],
    )
    return lines


def math_helpers(dtype: str) -> list[str]:
    """Source lines of the helpers every generated module defines, after its ``DT``, ``_0``,
    ``_1`` and ``_HALF``.

    ``_exp``, ``_expm1``, ``_log``, ``_log1p``, ``_tanh``, ``_erf`` (what the renderer
    calls), their parts (``_exp_neg``, ``_expm1_neg``, ``_log1p_unit``, ``_log1p_core``,
    ``_pow2``, ``_round``), ``_sigmoid``, and ``_maximum``/``_minimum``, which propagate NaN
    as ``np.maximum``/``np.minimum`` do.
    """
    c = _FLOAT[dtype]
    lines = ["_M_INF = DT(np.inf)", "_M_NAN = DT(np.nan)"]
    lines += _exp_family(c) + _log_family(c) + _tanh_erf(c, dtype)
    lines += _function(
        "_sigmoid(v)",
        "1 / (1 + exp(-v)) from exp(-|v|), which never overflows (the table's form).",
        ["e = _exp_neg(-abs(v))", "inv = _1 / (_1 + e)", "return inv if v >= _0 else e * inv"],
    )
    lines += _function(
        "_maximum(x, y)",
        "np.maximum: NaN if either is NaN.",
        ["return x if (x > y or x != x) else y"],
    )
    lines += _function(
        "_minimum(x, y)",
        "np.minimum: NaN if either is NaN.",
        ["return x if (x < y or x != x) else y"],
    )
    return lines
