"""A model's user-defined activations belong to the model: loading and unpickling register
nothing, and models and estimators carry their formulas to other processes (issue 20)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.ops.table import ACTIVATION_ROWS
from mlp_accel.sklearn import MLPClassifier

X = np.linspace(-2, 2, 12).reshape(6, 2)


def _model(name: str, expr: str, backend: str = "numpy") -> ma.MLP:
    table = {name: {"expr": expr, "derivative": None}}
    return ma.MLP([2, 3, 1], [name, "sigmoid"], backend=backend, seed=0, custom_activations=table)


def test_two_files_with_one_name_for_two_formulas_load_side_by_side(tmp_path):
    _model("act_local", "2 * z").save(tmp_path / "a.npz")
    _model("act_local", "3 * z").save(tmp_path / "b.npz")
    a, b = (ma.load(tmp_path / f, backend="numpy") for f in ("a.npz", "b.npz"))
    assert a.activations == ("act_local", "sigmoid")
    assert a.activation_table["act_local"]["expr"] == "2 * z"
    assert b.activation_table["act_local"]["expr"] == "3 * z"
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))
    assert "act_local" not in ACTIVATION_ROWS  # nothing registered
    with pytest.raises(ValueError, match="unknown activation 'act_local'"):
        ma.MLP([2, 3, 1], ["act_local", "sigmoid"])
    # the names a file carries but its model does not use are not read
    copy = a.to("numpy")
    assert copy.activation_table == a.activation_table


def test_load_refuses_an_expression_beyond_the_limits(tmp_path):
    import json

    _model("act_deep", "z").save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["custom_activations"]["act_deep"]["expr"] = "(" * 11 + "z" + ")**4" * 11 + "+z" * 40
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match=r"m\.npz.*act_deep.*nested more than"):
        ma.load(tmp_path / "m.npz", backend="numpy")


def test_a_formula_the_model_carries_runs_on_numba_as_on_numpy():
    ref = _model("act_nb", "z * tanh(z) + 0.5 * z")
    other = _model("act_nb", "z * tanh(z) + 0.5 * z", backend="numba")
    np.testing.assert_allclose(other.predict_proba(X), ref.predict_proba(X), rtol=1e-5)


def _estimator() -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=(4,), activation="soft_est", max_iter=3, backend="numpy", random_state=0
    )


def test_pickled_estimator_predicts_in_a_fresh_process(tmp_path):
    ma.register_activation("soft_est", "maximum(z, 0) + log1p(exp(-abs(z)))")
    Xy = np.random.default_rng(0).normal(size=(30, 3))
    y = (Xy[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = _estimator().fit(Xy, y)
    code = (
        "import pickle, sys, numpy as np\n"
        "from mlp_accel.ops.table import ACTIVATION_ROWS\n"
        "est = pickle.loads(sys.stdin.buffer.read())\n"
        "assert 'soft_est' not in ACTIVATION_ROWS\n"
        "np.save(sys.argv[1], est.predict_proba(np.ones((2, 3))))\n"
    )
    path = tmp_path / "p.npy"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        input=pickle.dumps(est),
        capture_output=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-500:]
    np.testing.assert_allclose(np.load(path), est.predict_proba(np.ones((2, 3))))


def test_grid_search_with_a_registered_activation_runs_in_worker_processes():
    from sklearn.model_selection import GridSearchCV

    ma.register_activation("soft_est", "maximum(z, 0) + log1p(exp(-abs(z)))")
    Xy = np.random.default_rng(1).normal(size=(24, 3))
    y = (Xy[:, 0] > 0).astype(int)
    search = GridSearchCV(
        _estimator(), {"alpha": [1e-4, 1e-3]}, n_jobs=2, cv=2, error_score="raise"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(Xy, y)
    assert search.best_estimator_.activation == "soft_est"


def test_formula_keys_are_reserved_and_a_child_can_install_its_own():
    # a compiling child process is sent (key, formula) and installs it under that key only
    from mlp_accel.ops.custom import formula_key

    key = formula_key("5 * z", None)
    ma.register_activation(key, "5 * z")
    assert ACTIVATION_ROWS[key].expr == "5 * z"
    with pytest.raises(ValueError, match="reserved"):
        ma.register_activation(key, "6 * z")
    with pytest.raises(ValueError, match="reserved"):
        ma.register_activation("__mine", "z")
    with pytest.raises(ValueError) as info:
        ma.MLP([2, 1], ["nope"])
    assert "__expr_" not in str(info.value)  # keys are never listed as valid names
