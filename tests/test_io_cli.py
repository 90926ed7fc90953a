"""The command line with bad model files and odd output paths: one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mlp_accel as ma


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlp_accel", *args], capture_output=True, text=True, timeout=300
    )


def _features(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    return path


def _one_line_error(result, *expected):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_csv_as_model_says_what_it_is(tmp_path):
    data = _features(tmp_path)
    result = run_cli("predict", "--model", str(data), "--data", str(data), "--backend", "numpy")
    line = _one_line_error(result, str(data), "not an mlp_accel model file", "text file")
    assert "pickle" not in line


def test_npy_as_model_says_what_it_is(tmp_path):
    npy = tmp_path / "weights.npy"
    np.save(npy, np.ones((3, 3)))
    result = run_cli(
        "predict", "--model", str(npy), "--data", str(_features(tmp_path)), "--backend", "numpy"
    )
    _one_line_error(result, str(npy), "single NumPy array")


def test_resume_from_malformed_checkpoint_is_one_line(tmp_path):
    ck = tmp_path / "ck.npz"
    model = ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(8, 3))
    ma.fit(model, X, np.arange(8) % 2, epochs=1, checkpoint=ck)
    with np.load(ck) as npz:
        arrays = dict(npz)
    del arrays["W2"]
    np.savez(ck, **arrays)
    result = run_cli(
        "train", "--resume", str(ck), "--epochs", "2", "--no-progress", "--backend", "numpy"
    )
    _one_line_error(result, str(ck))


def test_predict_out_writes_through_a_symlink(tmp_path):
    model_path = tmp_path / "m.npz"
    ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0).save(model_path)
    target = tmp_path / "predictions.csv"
    link = tmp_path / "latest.csv"
    link.symlink_to(target.name)
    result = run_cli(
        "predict",
        "--model",
        str(model_path),
        "--data",
        str(_features(tmp_path)),
        "--backend",
        "numpy",
        "--out",
        str(link),
    )
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and len(target.read_text().splitlines()) == 1 + 2  # header, rows


def test_predict_never_writes_over_its_data_or_model(tmp_path, capsys):
    # Before the fix, --out naming --data replaced the rows with their predictions.
    from mlp_accel.cli import main

    model_path = tmp_path / "m.npz"
    ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0).save(model_path)
    data = _features(tmp_path)
    before = {p: p.read_bytes() for p in (model_path, data)}
    for out, what in ((data, "--data and --out"), (model_path, "--model and --out")):
        args = ["predict", "--model", str(model_path), "--data", str(data), "--out", str(out)]
        assert main([*args, "--backend", "numpy"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{what} name the same file" in err[0], err
    assert {p: p.read_bytes() for p in before} == before


# -- issue 20 item 1: a model saved by the CLI is the same model in Python -------------------------
FAST = ["--no-progress", "--backend", "numpy"]


def _cli(*args):
    from mlp_accel.cli import main

    assert main(list(args)) == 0


@pytest.fixture(scope="module")
def wine_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("wine") / "w.npz"
    _cli("train", "--dataset", "wine", "--epochs", "60", *FAST, "--save", str(path))
    return path


def test_a_cli_model_predicts_raw_features_in_python_as_predict_does(wine_model, tmp_path, capsys):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    model = ma.load(wine_model)
    assert model.preprocessing is not None and list(model.preprocessing.classes) == [0, 1, 2]
    python = model.predict(X)
    assert np.mean(python == y) > 0.95  # raw features in: scored 0.33 when the scaling was lost
    data = tmp_path / "wine.npy"
    np.save(data, X)
    capsys.readouterr()
    _cli("predict", "--model", str(wine_model), "--data", str(data), "--backend", "numpy")
    assert capsys.readouterr().out.split() == ["prediction", *(str(v) for v in python)]
    _cli("predict", "--model", str(wine_model), "--data", str(data), "--proba", *FAST[1:])
    printed = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",", skiprows=1)
    np.testing.assert_allclose(printed, model.predict_proba(X), rtol=1e-5, atol=1e-6)
    # The network's own terms remain reachable: standardized rows, class indices.
    pre, model.preprocessing = model.preprocessing, None
    np.testing.assert_array_equal(model.predict((X - pre.x_mean) / pre.x_scale), python)


def test_fine_tuning_a_cli_model_takes_raw_features_and_labels(wine_model, tmp_path):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    labels = np.array(["a", "b", "c"])[y]
    model = ma.load(wine_model)
    history = ma.fit(model, X, y, epochs=5, optimizer=ma.optim.Adam(1e-3))
    assert history["loss"][-1] < 0.3 and np.mean(model.predict(X) == y) > 0.95
    with pytest.raises(ValueError, match=r"labels the model was not trained on \(a, b, c\)"):
        ma.fit(model, X, labels, epochs=1)
    with pytest.raises(ValueError, match="not trained on"):
        ma.fit(model, X, y + 1, epochs=1)  # 3 is no class: refused, not read as an index
    # A resume carries the preprocessing: the checkpoint's, checked against the model's.
    ck = tmp_path / "ck.npz"
    ma.fit(model, X, y, epochs=2, checkpoint=ck)
    assert list(ma.load(ck).preprocessing.classes) == [0, 1, 2]
    ma.fit(ma.load(wine_model), X, y, epochs=3, resume_from=ck)
    bare = ma.load(wine_model)
    bare.preprocessing = None
    with pytest.raises(ValueError, match="feature scaling, labels"):
        ma.fit(bare, X, y, epochs=3, resume_from=ck)


def test_text_labels_and_regression_targets_come_back_in_the_users_terms(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=50.0, scale=10.0, size=(200, 2))
    csv = tmp_path / "t.csv"
    labels = np.where(X[:, 0] > 50, "high", "low")
    np.savetxt(csv, np.column_stack([X, labels]), fmt="%s", delimiter=",")
    path = tmp_path / "t.npz"
    _cli("train", "--data", str(csv), "--epochs", "80", *FAST, "--save", str(path))
    model = ma.load(path)
    assert np.mean(model.predict(X) == labels) > 0.9
    assert model.preprocessing.feature_names is None  # no header, no names
    path = tmp_path / "d.npz"
    _cli("train", "--dataset", "diabetes", "--epochs", "30", *FAST, "--save", str(path))
    from sklearn.datasets import load_diabetes

    Xd, yd = load_diabetes(return_X_y=True)
    predicted = ma.load(path).predict(Xd)
    assert 50 < predicted.mean() < 300  # target units (yd.mean() is 152), not standardized
    ma.fit(ma.load(path), Xd, yd, epochs=2)


def test_a_plain_model_loads_without_preprocessing(tmp_path):
    path = tmp_path / "m.npz"
    model = ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0)
    model.save(path)
    assert ma.load(path).preprocessing is None


def test_a_malformed_preprocessing_names_the_file(tmp_path):
    path = tmp_path / "m.npz"
    model = ma.MLP([3, 4, 1], backend="numpy", seed=0)
    ma.io.save(model, path, extras={"x_mean": np.zeros(3), "x_scale": np.array([1.0, 0.0, 1.0])})
    with pytest.raises(ValueError, match=f"{path} has an invalid preprocessing: x_scale must be"):
        ma.load(path)
    model.preprocessing = ma.Preprocessing(classes=["no", "yes"])
    with pytest.raises(ValueError, match="are the model's preprocessing"):
        ma.io.save(model, path, extras={"classes": np.array([0, 1])})
    with pytest.raises(ValueError, match="classes do not fit"):
        model.preprocessing = ma.Preprocessing(classes=[1, 2, 3])


def test_dask_parts_go_through_the_preprocessing():
    from mlp_accel._dask_worker import _meta, _prepare_part

    model = ma.MLP([2, 3, 1], backend="numpy", dtype="float64", seed=0)
    pre = ma.Preprocessing(x_mean=[10.0, 0.0], x_scale=[2.0, 1.0], classes=["no", "yes"])
    X, y = _prepare_part(_meta(model), np.array([[12.0, 1.0]]), np.array(["yes"]), pre)
    np.testing.assert_array_equal(X, [[1.0, 1.0]])
    np.testing.assert_array_equal(y, [[1.0]])


# -- issue 20 item 1: a CLI checkpoint is the same model as the saved one ------------------------
def _test_split(*argv):
    """The raw test split a CLI run with these arguments scores (its own data preparation)."""
    from mlp_accel.cli import build_parser
    from mlp_accel.cli._train_data import prepare_training_data

    data = prepare_training_data(build_parser().parse_args(["train", *argv]))
    return data.X_test, data.y_test


def test_a_cli_checkpoint_takes_raw_features_as_the_saved_model(tmp_path, capsys):
    from sklearn.datasets import load_wine

    ck, saved = tmp_path / "ck.npz", tmp_path / "m.npz"
    argv = ["--dataset", "wine", "--epochs", "20", *FAST]
    _cli("train", *argv, "--checkpoint", str(ck), "--save", str(saved))
    printed = float(
        capsys.readouterr().out.splitlines()[-1].split()[5]
    )  # "train accuracy A  test accuracy B"
    X, _ = load_wine(return_X_y=True)
    from_ck, from_save = ma.load(ck), ma.load(saved)
    assert from_ck.preprocessing.same_as(from_save.preprocessing)
    np.testing.assert_array_equal(from_ck.predict(X), from_save.predict(X))
    X_test, y_test = _test_split(*argv)
    assert np.mean(from_ck.predict(X_test) == y_test) == pytest.approx(printed, abs=5e-5)
    data = tmp_path / "wine.npy"
    np.save(data, X)
    _cli("predict", "--model", str(ck), "--data", str(data), "--backend", "numpy")
    assert capsys.readouterr().out.split() == [
        "prediction",
        *(str(v) for v in from_save.predict(X)),
    ]


def test_a_resumed_cli_run_continues_the_interrupted_one(tmp_path, capsys):
    ck, straight = tmp_path / "ck.npz", tmp_path / "straight.npz"
    argv = ["--dataset", "wine", *FAST, "--batch-size", "32"]
    _cli("train", *argv, "--epochs", "6", "--save", str(straight))
    _cli("train", *argv, "--epochs", "3", "--checkpoint", str(ck))
    _cli("train", *argv, "--epochs", "6", "--resume", str(ck), "--checkpoint", str(ck))
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("train ")]
    assert lines[0].split()[:6] == lines[-1].split()[:6]  # the same scores as the straight run
    assert ma.io.load_metadata(ck)["checkpoint"]["epoch"] == 6
    for a, b in zip(ma.load(ck).get_weights(), ma.load(straight).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resuming_a_checkpoint_of_other_data_is_refused(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    _cli("train", "--dataset", "wine", "--epochs", "2", *FAST, "--checkpoint", str(ck))
    argv = ["train", "--dataset", "wine", "--epochs", "4", *FAST, "--resume", str(ck)]
    from mlp_accel.cli import main

    capsys.readouterr()
    assert main([*argv, "--seed", "3"]) == 1  # another split: other feature statistics
    assert "trained with other feature statistics" in capsys.readouterr().err
    plain = tmp_path / "plain.npz"
    model = ma.MLP([13, 64, 3], ["relu", "softmax"], "cross_entropy", backend="numpy", seed=0)
    ma.fit(model, np.zeros((4, 13)), [0, 1, 2, 0], epochs=1, checkpoint=plain)
    assert main([*argv[:-1], str(plain)]) == 1
    err = capsys.readouterr().err
    assert "holds no feature scaling or class labels" in err and "Traceback" not in err
