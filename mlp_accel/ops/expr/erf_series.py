"""Chebyshev coefficients of ``erf``, for renderers whose target computes ``erf`` from
arithmetic: the Numba helpers (``mlp_accel/backends/numba/vecmath.py``) and ONNX in float64,
which onnxruntime's ``Erf`` does not run.

``erf(x) = x h(2 x^2 - 1)`` for ``|x| < 1`` and ``1 - exp(-x^2) g(v)`` beyond, up to
:data:`ERF_MAX` (where ``erf`` rounds to 1), with ``v`` linear in ``t = 2 / (2 + |x|)``:
``v = -1`` at ``x = 1``, ``v = 1`` at ``x = ERF_MAX``. Evaluated by Clenshaw's recurrence,
within 1e-15 of ``erf`` in float64 and 1.2e-7 in float32 (checked in tests/test_numba_math.py).
"""

from __future__ import annotations

__all__ = ["ERF_HEAD", "ERF_TAIL", "ERF_MAX"]

#: Beyond this ``|x|``, ``erf(x)`` rounds to 1 in the dtype.
ERF_MAX = {"float64": 6.0, "float32": 4.0}

# Chebyshev interpolation coefficients (mpmath, 40 digits, at the Chebyshev nodes) of
# erf(x) / x in u = 2 x^2 - 1 for |x| <= 1, and of erfc(x) exp(x^2) in u linear in
# t = 2 / (2 + x) for 1 <= x <= ERF_MAX; fewer for float32, whose precision they reach sooner.
ERF_HEAD = {
    "float64": (
        0.9754769393826541,
        -0.14226120510371365,
        0.010035582187599796,
        -0.0005768764699767485,
        2.741993125219606e-05,
        -1.1043175507344507e-06,
        3.8488755420345036e-08,
        -1.1808582533875466e-09,
        3.2334215826050435e-11,
        -7.991015946679151e-13,
        1.7990723022320763e-14,
        -3.717374242306777e-16,
    ),
    "float32": (
        0.9754769393826541,
        -0.14226120510371326,
        0.010035582187581805,
        -0.0005768764691776469,
        2.7419898917980237e-05,
        -1.1031366924810632e-06,
    ),
}
ERF_TAIL = {
    "float64": (
        0.24078150322816144,
        -0.1660357343713446,
        0.01937548512710411,
        -0.0013725838866457216,
        2.3301617872657463e-05,
        4.842439456015362e-06,
        -2.1925049177302584e-07,
        -2.8603646284729237e-08,
        1.258114961136046e-09,
        2.4685801467325007e-10,
        -2.494144837888484e-12,
        -2.329500450476122e-12,
        -9.680201775654896e-14,
        1.7796924054574097e-14,
        2.2446259310401016e-15,
        -2.910591760598499e-17,
        -2.844672912954679e-17,
        -2.211859605929501e-18,
    ),
    "float32": (
        0.2688380522352617,
        -0.14457137561740324,
        0.013447956150487045,
        -0.000722428837584814,
        5.544305075660867e-06,
        1.751869551976077e-06,
        -3.586205305420978e-08,
        -6.745539223874554e-09,
    ),
}
