"""The CLI's data handling and failure modes (issue #14: items 1, 2, 8-11, 14)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mlp_accel
from mlp_accel import cli
from mlp_accel.cli import main
from mlp_accel.data import check_features, load_file

FAST = ["--no-progress", "--backend", "numpy"]


def write_csv(path, X, y=None, header=None):
    with open(path, "w") as f:
        if header is not None:
            f.write(",".join(header) + "\n")
        for i, row in enumerate(X):
            fields = [f"{v:.6f}" for v in row]
            if y is not None:
                fields.append(str(y[i]))
            f.write(",".join(fields) + "\n")


def result_line(out: str) -> list[str]:
    return out.strip().splitlines()[-1].split()


@pytest.fixture
def table(tmp_path):
    """A 3-feature problem with text labels, as a headed CSV."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path = tmp_path / "table.csv"
    write_csv(path, X, y, header=["x1", "x2", "x3", "answer"])
    return path, X, y


# -- item 2: CSV headers and text labels --------------------------------------------------------
def test_headerless_csv_loses_no_row(tmp_path):
    X = np.arange(15.0).reshape(5, 3)
    path = tmp_path / "plain.csv"
    write_csv(path, X)
    features, target = load_file(path)
    np.testing.assert_array_equal(features, X[:, :2])
    np.testing.assert_array_equal(target, X[:, 2])
    features, target = load_file(path, has_target=False)
    assert features.shape == (5, 3) and target is None


def test_header_is_detected_and_skipped(tmp_path):
    X = np.arange(15.0).reshape(5, 3)
    path = tmp_path / "headed.csv"
    write_csv(path, X, header=["a", "b", "target"])
    features, target = load_file(path)
    np.testing.assert_array_equal(features, X[:, :2])
    np.testing.assert_array_equal(target, X[:, 2])


def test_text_labels_are_read_as_strings(table):
    path, X, y = table
    features, target = load_file(path)
    np.testing.assert_allclose(features, X, atol=1e-6)
    assert target.dtype.kind == "U" and list(target[:5]) == list(y[:5])


def test_predict_on_headerless_file_prints_every_row(tmp_path, table, capsys):
    path, X, _ = table
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(path), "--epochs", "60", *FAST, "--save", str(model)]) == 0
    assert "accuracy" in capsys.readouterr().out
    plain = tmp_path / "plain.csv"
    write_csv(plain, X[:5])
    assert main(["predict", "--model", str(model), "--data", str(plain), *FAST[1:]]) == 0
    header, *lines = capsys.readouterr().out.split()
    # five rows in, five predictions out, in the user's own labels
    assert header == "prediction" and len(lines) == 5 and set(lines) <= {"yes", "no"}


def test_text_labels_round_trip_through_save_and_predict(tmp_path, table, capsys):
    path, _, y = table
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(path), "--epochs", "80", *FAST, "--save", str(model)]) == 0
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    # the training file itself: its text target column is recognised and ignored
    assert (
        main(["predict", "--model", str(model), "--data", str(path), "--out", str(out), *FAST[1:]])
        == 0
    )
    predicted = out.read_text().split()[1:]
    assert len(predicted) == len(y) and np.mean(np.array(predicted) == y) > 0.9


def test_text_labels_refused_for_regression(table, capsys):
    path, _, _ = table
    assert main(["train", "--data", str(path), "--task", "regression", *FAST]) == 1
    assert "text labels such as" in capsys.readouterr().err


# -- item 1: predict validates X against the model first ----------------------------------------
@pytest.fixture
def three_feature_model(tmp_path, table, capsys):
    path, _, _ = table
    model = tmp_path / "m3.npz"
    assert main(["train", "--data", str(path), "--epochs", "5", *FAST, "--save", str(model)]) == 0
    capsys.readouterr()
    return model


def test_predict_refuses_too_few_columns(tmp_path, three_feature_model, capsys):
    one_column = tmp_path / "one.csv"
    write_csv(one_column, np.ones((4, 1)))
    code = main(["predict", "--model", str(three_feature_model), "--data", str(one_column)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert "has 1 feature column; the model expects 3" in captured.err


def test_predict_refuses_complex_features(tmp_path, three_feature_model, capsys):
    data = tmp_path / "c.npy"
    np.save(data, np.ones((4, 3), dtype=complex))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning would fail the test
        code = main(["predict", "--model", str(three_feature_model), "--data", str(data)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and "complex numbers" in captured.err


def test_check_features():
    X = np.ones((2, 3))
    assert check_features(X, 3) is X
    assert check_features(np.ones((2, 4)), 3).shape == (2, 3)
    with pytest.raises(ValueError, match="has 5 feature columns; the model expects 3"):
        check_features(np.ones((2, 5)), 3, "f.npy")
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_features(np.array([[1.0, np.inf, 0.0]]), 3)
    with pytest.raises(ValueError, match="2-D"):
        check_features(np.ones(3), 3)


# -- item 14: empty files, one class, a loss that does not fit the data -------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("\n\n", "is empty"), ("a,b,target\n", "has a header but no data rows")],
)
def test_empty_csv_is_a_clean_error(tmp_path, content, message, capsys):
    path = tmp_path / "e.csv"
    path.write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not leak
        with pytest.raises(ValueError, match=message):
            load_file(path)
        assert main(["train", "--data", str(path)]) == 1  # (the entry point: test_cli.py)
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"mlp-accel: error: {path} {message}"] or (
        len(err.strip().splitlines()) == 1 and message in err
    )


def test_one_class_data_names_the_problem(tmp_path, capsys):
    path = tmp_path / "one.csv"
    write_csv(path, np.arange(20.0).reshape(10, 2), ["spam"] * 10, header=["a", "b", "y"])
    assert main(["train", "--data", str(path), *FAST]) == 1
    err = capsys.readouterr().err
    assert "has a single class (spam)" in err and "softmax" not in err


def test_cross_entropy_on_binary_data_names_the_problem(capsys):
    assert main(["train", "--loss", "cross_entropy", *FAST]) == 1
    err = capsys.readouterr().err
    assert "binary" in err and "--loss binary_cross_entropy" in err and "softmax output" not in err
    # What the message suggests works.
    args = ["train", "--loss", "cross_entropy", "--task", "multiclass", "--epochs", "5", *FAST]
    assert main(args) == 0
    assert "layers 2-64-2" in capsys.readouterr().out


def test_classification_loss_on_regression_data_names_the_problem(capsys):
    assert main(["train", "--dataset", "diabetes", "--loss", "cross_entropy", *FAST]) == 1
    assert "continuous (regression)" in capsys.readouterr().err


# -- item 8: early stopping on regression -------------------------------------------------------
def test_early_stopping_on_regression(capsys):
    args = ["train", "--dataset", "diabetes", "--early-stopping", "3", "--epochs", "40", *FAST]
    assert main(args) == 0
    assert "R2" in capsys.readouterr().out


# -- item 9: every failure is one line ----------------------------------------------------------
def test_absurd_layer_sizes_are_refused_before_allocating():
    result = subprocess.run(
        [sys.executable, "-m", "mlp_accel", "train", "--layers", "2,1000000000000,1", *FAST],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "parameters) needs at least" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (KeyError("W2"), "error: KeyError: 'W2'"),
        (MemoryError(), "error: out of memory"),
        (RecursionError("maximum recursion depth exceeded"), "maximum recursion depth"),
        (AttributeError("'list' object has no attribute 'get'"), "AttributeError: 'list'"),
    ],
)
def test_unexpected_exceptions_are_one_line(monkeypatch, capsys, exc, message):
    def fail(args):
        raise exc

    monkeypatch.setitem(cli._COMMANDS, "train", fail)
    assert main(["train"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_dask_failure_is_named_as_such(monkeypatch, capsys):
    closed = []

    class DeadClient:
        def close(self):
            closed.append(True)
            raise OSError("already closed")  # must not mask the real error

    def dying_fit(*args, **kwargs):
        raise KeyError("workers")  # what distributed._with_retry raises when the scheduler dies

    monkeypatch.setattr(cli, "_dask_client", lambda args: (DeadClient(), None))
    monkeypatch.setattr(mlp_accel, "fit", dying_fit)
    assert main(["train", "--epochs", "2", *FAST]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the Dask cluster failed during training" in lines[0]
    assert "KeyError" in lines[0] and closed


# -- item 10: plotting --------------------------------------------------------------------------
def test_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(mlp_accel, "fit", lambda *a, **k: trained.append(1))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    assert main(["train", *FAST, "--plot", str(tmp_path / "p.png")]) == 1
    captured = capsys.readouterr()
    assert "needs matplotlib" in captured.err and not trained and captured.out == ""


def test_plotting_uses_the_object_api_and_leaves_pyplot_alone(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    code = f"""
import sys, matplotlib
import mlp_accel as ma
from mlp_accel.plotting import plot_training
from sklearn.datasets import make_circles
X, y = make_circles(200, noise=0.1, factor=0.5, random_state=0)
model = ma.MLP([2, 4, 1], backend="numpy")
history = ma.fit(model, X, y, epochs=3, progress=False)
fig = plot_training({str(png)!r}, history, model, X, y)
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
# MPLBACKEND chose svg; matplotlib.use("Agg") would have switched it
assert matplotlib.rcParams._get_backend_or_none() == "svg"
print(fig.axes[1].get_title())
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "svg"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Decision boundary (test split)"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_functions_draw_into_a_given_axes():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from mlp_accel.plotting import plot_decision_boundary, plot_loss

    X = np.random.default_rng(0).normal(size=(50, 2))
    y = (X[:, 0] > 0).astype(float)
    model = mlp_accel.MLP([2, 3, 1], backend="numpy")
    history = mlp_accel.fit(model, X, y, epochs=2, progress=False)
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_loss(history, ax=left) is left and left.get_title() == "Loss"
    assert plot_decision_boundary(model, X, y, ax=right, title="mine") is right
    assert right.get_title() == "mine"
    with pytest.raises(ValueError, match="2 features"):
        plot_decision_boundary(model, np.ones((3, 3)), np.ones(3))


# -- item 11: samples/s is rows over training seconds -------------------------------------------
def test_throughput_is_rows_over_seconds_not_a_mean_of_rates():
    history = mlp_accel.History()
    history.append(epoch=1, samples_per_sec=100.0, time=1.0)  # 100 rows
    history.append(epoch=2, samples_per_sec=400.0, time=0.5)  # 200 rows
    rows, seconds = cli._throughput(history, first_epoch=0)
    assert rows == 300 and seconds == 1.5  # 200 samples/s; the mean of the rates says 250
    rows, seconds = cli._throughput(history, first_epoch=1)  # resumed after epoch 1
    assert rows == 200 and seconds == 0.5


def test_report_line_is_consistent(capsys):
    assert main(["train", "--epochs", "7", *FAST]) == 0
    fields = result_line(capsys.readouterr().out)
    rows = int(fields[fields.index("trained") + 1].replace(",", ""))
    seconds = float(fields[fields.index("trained") + 4])
    rate = float(fields[fields.index("samples/s") - 1].replace(",", ""))
    wall = float(fields[fields.index("wall") + 1])
    assert rows == 7 * 750  # circles: 1000 rows, 750 in the training split
    assert seconds <= wall + 0.01
    if seconds >= 0.1:  # the printed seconds are rounded to 0.01 s
        assert rate == pytest.approx(rows / seconds, rel=0.1)


# -- issue 20 item 2: CSV columns are matched by the header's names -------------------------------
@pytest.fixture
def named_model(tmp_path, table, capsys):
    path, X, y = table
    model = tmp_path / "named.npz"
    assert main(["train", "--data", str(path), "--epochs", "80", *FAST, "--save", str(model)]) == 0
    capsys.readouterr()
    return model, X, y


def _predict(model, data, capsys, *extra):
    code = main(["predict", "--model", str(model), "--data", str(data), *FAST[1:], *extra])
    captured = capsys.readouterr()
    lines = captured.out.split()
    if lines and lines[0] == "prediction":  # the header row names the column
        lines = lines[1:]
    return code, lines, captured.err


def test_a_permuted_header_is_matched_by_name(tmp_path, named_model, capsys):
    model, X, y = named_model
    assert mlp_accel.load(model).preprocessing.feature_names == ["x1", "x2", "x3"]
    same = tmp_path / "same.csv"
    write_csv(same, X, header=["x1", "x2", "x3"])
    code, expected, _ = _predict(model, same, capsys)
    assert code == 0 and np.mean(np.array(expected) == y) > 0.9
    # Another column order, and the target column first: the same predictions.
    permuted = tmp_path / "permuted.csv"
    with open(permuted, "w") as f:
        f.write("answer,x3,x1,x2\n")
        for row, label in zip(X, y):
            f.write(f"{label},{row[2]:.6f},{row[0]:.6f},{row[1]:.6f}\n")
    assert _predict(model, permuted, capsys) == (0, expected, "")


def test_a_header_with_other_names_is_refused(tmp_path, named_model, capsys):
    model, X, _ = named_model
    other = tmp_path / "other.csv"
    write_csv(other, X, header=["x1", "x2", "x4"])
    code, out, err = _predict(model, other, capsys)
    assert code == 1 and out == [] and len(err.strip().splitlines()) == 1
    assert "do not match the model's features (x1, x2, x3): missing 'x3'; unknown 'x4'" in err
    twice = tmp_path / "twice.csv"
    write_csv(twice, X, header=["x1", "x2", "x1"])
    assert "names column(s) ['x1'] more than once" in _predict(model, twice, capsys)[2]


def test_training_refuses_a_header_naming_a_column_twice(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    write_csv(path, np.ones((10, 2)), ["a", "b"] * 5, header=["x", "x", "y"])
    assert main(["train", "--data", str(path), *FAST]) == 1
    assert "the header names column(s) ['x'] more than once" in capsys.readouterr().err


# -- issue 20 item 3: a first row is a header only when it is one -------------------------------
def _text_labelled(path, first=None):
    rows = [f"{i / 10:.1f},{-i / 10:.1f},{'yes' if i % 2 else 'no'}" for i in range(30)]
    path.write_text("\n".join(([first] if first else []) + rows) + "\n")
    return path


def test_a_headerless_first_row_with_a_text_label_is_data(tmp_path, capsys):
    path = _text_labelled(tmp_path / "plain.csv")
    X, y = load_file(path)
    assert X.shape == (30, 2) and list(y[:2]) == ["no", "yes"]
    assert load_file(path, has_target=False, n_features=2)[0].shape == (30, 2)
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(path), "--epochs", "2", *FAST, "--save", str(model)]) == 0
    assert "trained 44 samples" in capsys.readouterr().out  # 2 epochs x 22 rows, none lost
    code, out, _ = _predict(model, path, capsys)
    assert code == 0 and len(out) == 30


@pytest.mark.parametrize(
    ("first", "why"),
    [("1,x,label", "some of its feature columns are numbers"), ("1,2,label", None)],
)
def test_an_undecidable_first_row_asks_for_header_or_no_header(tmp_path, capsys, first, why):
    path = tmp_path / "odd.csv"
    if why is None:  # numbers over a numeric target column, with a text target: a header?
        rows = [f"{i},{-i},{i % 2}" for i in range(30)]
        path.write_text("\n".join([first, *rows]) + "\n")
        why = "its target 'label' is text over a column of numbers"
    else:
        _text_labelled(path, first)
    with pytest.raises(ValueError, match=why):
        load_file(path)
    assert main(["train", "--data", str(path), *FAST]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--header or --no-header" in err
    X, _ = load_file(path, header=True)
    assert X.shape == (30, 2)
    assert main(["train", "--data", str(path), "--header", "--epochs", "1", *FAST]) == 0
    capsys.readouterr()
    if first == "1,x,label":
        with pytest.raises(ValueError, match="a feature value is not a number"):
            load_file(path, header=False)
    else:  # told it is data, it is data
        assert load_file(path, header=False)[0].shape == (31, 2)


# -- issue 20 item 14: the memory check counts what building and training really hold --------
def _fake_memory(monkeypatch, total):
    real = os.sysconf

    def sysconf(name):
        if name == "SC_PHYS_PAGES":
            return total // 4096
        return 4096 if name == "SC_PAGE_SIZE" else real(name)

    monkeypatch.setattr(os, "sysconf", sysconf)


def test_the_memory_check_counts_the_rollback_copies_and_the_float64_draw(monkeypatch, capsys):
    from mlp_accel.cli._train_build import _check_model_size, _memory_needed

    # 2,30000,30000,1 (900 M parameters) on float32: 18 GB was the estimate, and the run
    # was killed; weights, gradients, moments, rollback copies and update temporaries hold 32 GB.
    _fake_memory(monkeypatch, 24 * 10**9)
    with pytest.raises(ValueError, match=r"needs at least 3\d.\d GB of memory to train"):
        _check_model_size([2, 30000, 30000, 1], "float32", 750)
    # The float64 draw of the initial weights is counted where it is the peak.
    assert _memory_needed([10, 10], "float64", 0) == 7 * 8 * 110 + 2 * 8 * 110
    assert _memory_needed([1000, 1000], "float32", 1) >= 12 * 1_001_000
    # Through the command line, on a small network and a tiny fake machine: refused, one line.
    _fake_memory(monkeypatch, 3_500_000)  # the old estimate, 3.2 MB, passed here
    assert main(["train", "--layers", "2,200,200,1", "--epochs", "1", *FAST]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "more than this machine's 3.5 MB" in err


# -- issue 20 item 1: checkpoints of memory-mapped and regression runs take raw rows --------------
@pytest.mark.parametrize("target", ["classes", "values"])
def test_a_memory_mapped_run_checkpoints_raw_in_raw_out(tmp_path, capsys, target):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    y = (X[:, 0] > 0).astype(float) if target == "classes" else 3 * X[:, 0] + X[:, 1] + 7
    data, ck, saved = tmp_path / "d.npy", tmp_path / "ck.npz", tmp_path / "m.npz"
    np.save(data, np.column_stack([X, y]))
    argv = ["train", "--data", str(data), "--test-size", "0.2", "--batch-size", "50", *FAST]
    assert main([*argv, "--epochs", "30", "--checkpoint", str(ck), "--save", str(saved)]) == 0
    words = result_line(capsys.readouterr().out)
    from_ck = mlp_accel.load(ck)
    np.testing.assert_array_equal(from_ck.predict(X), mlp_accel.load(saved).predict(X))
    # The memory map's test split is its last rows: scored raw, as the CLI printed.
    X_test, y_test = X[-60:], y[-60:]
    if target == "classes":
        assert np.mean(from_ck.predict(X_test) == y_test) == pytest.approx(
            float(words[5]), abs=5e-5
        )
    else:
        from sklearn.metrics import r2_score

        assert r2_score(y_test, from_ck.predict(X_test)) == pytest.approx(float(words[5]), abs=5e-5)
        assert float(words[5]) > 0.9  # in the target's units, not standardized ones
    assert main([*argv, "--epochs", "40", "--resume", str(ck), "--checkpoint", str(ck)]) == 0
    assert mlp_accel.io.load_metadata(ck)["checkpoint"]["epoch"] == 40


def test_layers_that_do_not_fit_the_data_are_named_as_options(capsys):
    assert main(["train", "--layers", "3,4,1", "--epochs", "1", *FAST]) == 1
    assert (
        "--layers 3,4,1 has 3 input unit(s), but the data has 2 features" in capsys.readouterr().err
    )
    assert main(["train", "--dataset", "wine", "--layers", "13,8,2", "--epochs", "1", *FAST]) == 1
    err = capsys.readouterr().err
    assert "has 2 output unit(s), but the multiclass target needs 3" in err
