"""The expression language's constants and limits: IEEE constants folded once, refusals that are
ValueErrors leaving nothing registered, and renderings that grow linearly (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.ops import expr as E
from mlp_accel.ops.table import ACTIVATION_ROWS, ACTIVATIONS, ActivationRow


def _balanced_sum(depth: int) -> str:
    return "z" if depth == 0 else f"({_balanced_sum(depth - 1)} + {_balanced_sum(depth - 1)})"


def _nested_power(levels: int) -> str:
    return "(" * levels + "z" + ")**4" * levels


@pytest.mark.parametrize(
    "name, expr, why",
    [
        ("c_complex", "z + (-1)**0.5", "NaN"),
        ("c_zero_div", "z + 1/0", "infinite"),
        ("c_overflow", "z + 10**400", "infinite"),
        ("c_big_int", "z*1" + "0" * 400, "infinite"),
        ("c_float32", "z + 1e39", "float32"),
        ("c_log", "z * log(-1)", "NaN"),
        ("d_deep", "z+" * 600 + "z", "nested more than"),
        ("d_wide", _balanced_sum(8), "nodes"),
        ("d_nest", _nested_power(40), "nested more than"),
    ],
)
def test_refusals_are_value_errors_and_register_nothing(name, expr, why):
    with pytest.raises(ValueError, match=why):
        ma.register_activation(name, expr)
    assert name not in ACTIVATION_ROWS and name not in ACTIVATIONS
    ma.register_activation(name, "z")  # the name is still free
    assert ACTIVATION_ROWS[name].expr == "z"


def test_constant_parts_are_folded_once_in_float64():
    assert E.parse("z + 2 ** 0.5") == E.BinOp("+", E.Var("z"), E.Num(2**0.5))
    assert E.parse("where(1 > 0, z, 3) * exp(0)") == E.BinOp("*", E.Var("z"), E.Num(1.0))
    tree = E.parse("z * (exp(1) - erf(1) + maximum(2, 3))")
    assert isinstance(tree.right, E.Num)  # type: ignore[union-attr]


def test_folded_constants_give_the_same_values_on_numpy_and_numba():
    ma.register_activation("c_folded", "z * 2 ** 0.5 + sqrt(3) * exp(-1) + 1 / 3")
    X = np.linspace(-3, 3, 24).reshape(8, 3)
    models = [
        ma.MLP([3, 4, 2], ["c_folded", "identity"], backend=b, dtype="float32", seed=0)
        for b in ("numpy", "numba")
    ]
    ref, other = (m.predict(X) for m in models)
    assert ref.dtype == np.float32
    np.testing.assert_allclose(other, ref, rtol=1e-6)


def test_nested_powers_render_in_linear_size():
    sizes = []
    for levels in (3, 6, 9):  # small: an exponential renderer writes 4**9 copies at 9
        row = ActivationRow(f"p{levels}", _nested_power(levels), builtin=False)
        python = E.to_python(row.derivative_tree, {"z": "z", "a": "a"}, repr)
        cuda = E.to_cuda(row.derivative_tree, {"z": "z", "a": "a"})
        sizes.append(max(len(python), len(cuda)))
    # linear: three more levels add about as much as the first three
    assert sizes[2] < 4 * sizes[1] < 16 * sizes[0] < 20_000
    ma.register_activation("p_eleven", _nested_power(11))  # 11 levels: accepted and small


def test_rendered_size_limit(monkeypatch):
    monkeypatch.setattr(E.render, "MAX_RENDERED", 50)
    with pytest.raises(ValueError, match="renders to more than 50"):
        ma.register_activation("r_long", "tanh(tanh(tanh(tanh(z)))) * exp(z) + log1p(z * z)")
    assert "r_long" not in ACTIVATION_ROWS
