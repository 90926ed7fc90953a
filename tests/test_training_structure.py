"""The training side's structure: one data-source interface, one writer of the learning rate,
imports that point down."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import batches, schedules
from mlp_accel.optim import SGD
from mlp_accel.sklearn import MLPClassifier

PACKAGE = Path(ma.__file__).parent


class _WatchedSGD(SGD):
    """SGD that records which module wrote its learning rate."""

    def __init__(self, *args, **kwargs):
        self.writers: list[str] = []
        super().__init__(*args, **kwargs)
        self.writers.clear()  # the constructor's own assignment

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        caller = inspect.stack()[1].frame.f_globals.get("__name__", "?")
        if hasattr(self, "writers"):
            self.writers.append(caller)
        self._lr = value


def _data(n=40):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] > 0).astype(int)


def test_only_the_training_step_writes_the_learning_rate(tmp_path):
    X, y = _data()
    model = ma.MLP([3, 4, 1], backend="numpy", dtype="float64", seed=0)
    optimizer = _WatchedSGD(0.1, momentum=0.9)
    path = tmp_path / "ck.npz"
    ma.fit(
        model,
        X,
        y,
        epochs=2,
        batch_size=8,
        optimizer=optimizer,
        schedule=schedules.StepDecay(1, 0.5),
        checkpoint=path,
    )
    ma.fit(
        model,
        X,
        y,
        epochs=3,
        batch_size=8,
        optimizer=optimizer,
        resume_from=path,
        schedule=schedules.StepDecay(1, 0.5),
    )
    assert optimizer.writers and set(optimizer.writers) == {"mlp_accel.training.step"}
    assert optimizer.lr == 0.1


def test_the_estimators_adapted_rate_reaches_the_optimizer_through_the_step(monkeypatch):
    X, y = _data(60)
    made = []

    def make(self):
        made.append(_WatchedSGD(self.learning_rate_init, momentum=self.momentum))
        return made[-1]

    monkeypatch.setattr(MLPClassifier, "_make_optimizer", make)
    clf = MLPClassifier(
        hidden_layer_sizes=(4,),
        solver="sgd",
        learning_rate="invscaling",
        learning_rate_init=0.1,
        max_iter=5,
        backend="numpy",
        random_state=0,
    )
    with pytest.warns(Warning):
        clf.fit(X, y)
    assert set(made[0].writers) == {"mlp_accel.training.step"}


def test_every_source_is_a_batch_source_yielding_batches():
    X, y = _data()
    model = ma.MLP([3, 4, 1], backend="numpy", seed=0)
    sources = [
        batches.make_source(model, X, y, 1),
        batches.make_source(model, [(X[:20], y[:20]), (X[20:], y[20:])], None, 1),
    ]
    for source in sources:
        assert isinstance(source, batches.BatchSource)
        got = list(source.epoch(np.random.default_rng(0), 16, True))
        assert all(isinstance(b, batches.Batch) for b in got)
        assert sum(b.rows for b in got) == 40
    with pytest.raises(TypeError):
        batches.BatchSource()  # the interface has an abstract epoch


def test_the_dask_source_implements_the_same_interface():
    pytest.importorskip("dask")
    from mlp_accel.distributed import DaskSource, DaskStep
    from mlp_accel.training import TrainingStep

    assert issubclass(DaskSource, batches.BatchSource)
    assert issubclass(DaskStep, TrainingStep)


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            names.add((node.module or "").split(".")[0])
    return names


def test_imports_point_down():
    assert not _top_level_imports(PACKAGE / "model.py") & {
        "optim",
        "train",
        "training",
        "distributed",
        "sklearn",
        "batches",
        "callbacks",
    }
    for module in ("loop.py", "step.py", "hooks.py"):
        assert "distributed" not in _top_level_imports(PACKAGE / "training" / module)
    assert "distributed" not in _top_level_imports(PACKAGE / "train.py")


def test_training_and_the_estimators_use_public_model_methods_only():
    training_side = ["train.py", "batches.py", "distributed.py", "callbacks.py"]
    paths = [PACKAGE / name for name in training_side]
    paths += [*(PACKAGE / "training").glob("*.py"), *(PACKAGE / "sklearn").glob("*.py")]
    assert PACKAGE / "sklearn" / "_base.py" in paths  # a glob of a moved folder finds nothing
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "model"
                and node.attr.startswith("_")
            ):
                pytest.fail(f"{path.name}:{node.lineno} uses model.{node.attr}")


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from ``def`` to its end, its docstring left out (numpydoc
    parameter lists are documentation, not code to keep short)."""
    length = node.end_lineno - node.lineno + 1
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        length -= first.end_lineno - first.lineno + 1
    return length


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_are_short(path):
    """No module of the package over 500 lines, no function over 80 lines of code: each can be
    read whole."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 500, f"{path.name} has {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({_code_lines(node)} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 80
    ]
    assert long == [], f"{path.name}: {long}"


def test_progress_bar_counts_the_epochs_and_changes_nothing(monkeypatch):
    pytest.importorskip("tqdm")
    from mlp_accel.training import hooks

    closed = []
    close = hooks.ProgressBar.close

    def spy(self):
        closed.append((self.bar.n, self.bar.total))
        close(self)

    monkeypatch.setattr(hooks.ProgressBar, "close", spy)
    X, y = _data()
    runs = []
    for progress in (False, True):
        model = ma.MLP([3, 4, 1], backend="numpy", dtype="float64", seed=0)
        ma.fit(model, X, y, epochs=3, batch_size=8, optimizer="sgd", progress=progress)
        runs.append(model.get_weights())
    assert closed == [(3, 3)]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_is_written_when_a_callback_stops_training(tmp_path):
    X, y = _data()
    model = ma.MLP([3, 4, 1], backend="numpy", dtype="float64", seed=0)
    path = tmp_path / "ck.npz"
    ma.fit(
        model,
        X,
        y,
        epochs=10,
        optimizer="sgd",
        checkpoint=path,
        checkpoint_every=5,
        callbacks=[lambda epoch, logs: epoch == 2],
    )
    from mlp_accel.io import load_checkpoint

    assert load_checkpoint(path)["state"]["epoch"] == 2


def test_progress_bar_is_off_in_pipes(monkeypatch, capsys):
    # A log file or a pipe gets no carriage-return frames: tqdm's disable=None.
    pytest.importorskip("tqdm")
    monkeypatch.delenv("MLP_ACCEL_PROGRESS", raising=False)
    X, y = _data()
    model = ma.MLP([3, 4, 1], backend="numpy", dtype="float64", seed=0)
    ma.fit(model, X, y, epochs=3, batch_size=8, optimizer="sgd", progress=True)
    assert "\r" not in capsys.readouterr().err
