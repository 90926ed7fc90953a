"""The callbacks of issue 24: the best model's file, reduce-on-plateau and the CSV log, from the
library and the command; their states in checkpoints, so that a resumed run equals an
uninterrupted one bit for bit."""

from __future__ import annotations

import csv
import json
import math
import os
import threading

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import schedules
from mlp_accel.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

from .helpers import make_data
from .test_training_structure import _WatchedSGD

WIDTHS, ACTS, LOSS = [4, 8, 3], ["tanh", "softmax"], "cross_entropy"
TIMING = ("time", "samples_per_sec")  # the columns no two runs share


def _model(backend="numpy", seed=0):
    return ma.MLP(WIDTHS, ACTS, LOSS, backend=backend, dtype="float64", seed=seed)


def _data():
    """A learnable problem whose validation loss falls for some epochs, then rises."""
    rng = np.random.default_rng(5)

    def draw(n):
        X = rng.normal(size=(n, 4))
        return X, np.argmax(X[:, :3] + 0.5 * rng.normal(size=(n, 3)), axis=1)

    return (*draw(96), draw(48))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _same_weights(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# -- ModelCheckpoint -------------------------------------------------------------------------
def test_model_checkpoint_keeps_the_best_epochs_model(tmp_path):
    X, y, val = _data()
    model = _model()
    snapshots = {}
    best = ModelCheckpoint(tmp_path / "best.npz")
    h = ma.fit(
        model,
        X,
        y,
        epochs=25,
        batch_size=16,
        optimizer=ma.optim.Adam(0.05),
        validation_data=val,
        callbacks=[best, lambda e, logs: snapshots.__setitem__(e, model.get_weights())],
    )
    epoch = int(np.argmin(h["val_loss"])) + 1
    assert epoch < 25 and best.best_epoch == epoch and best.best == min(h["val_loss"])
    saved = ma.load(tmp_path / "best.npz")
    _same_weights(saved.get_weights(), snapshots[epoch])
    about = ma.io.load_metadata(tmp_path / "best.npz")["model_checkpoint"]
    assert about == {"epoch": epoch, "monitor": "val_loss", "value": min(h["val_loss"])}


def test_model_checkpoint_maximizes_accuracy_and_can_save_every_epoch(tmp_path):
    X, y, val = _data()
    model = _model()
    best = ModelCheckpoint(tmp_path / "acc.npz", monitor="val_accuracy")
    every = ModelCheckpoint(tmp_path / "last.npz", monitor="nothing", save_best_only=False)
    h = ma.fit(model, X, y, epochs=6, validation_data=val, callbacks=[best, every])
    assert best.sign == -1.0 and best.best == max(h["val_accuracy"])
    assert ma.io.load_metadata(tmp_path / "acc.npz")["model_checkpoint"]["value"] == best.best
    _same_weights(ma.load(tmp_path / "last.npz").get_weights(), model.get_weights())
    assert ma.io.load_metadata(tmp_path / "last.npz")["model_checkpoint"]["epoch"] == 6


@pytest.mark.parametrize(
    "make", [ModelCheckpoint, lambda path: EarlyStopping(), lambda path: ReduceLROnPlateau()]
)
def test_a_validation_metric_without_validation_data_is_refused_before_training(tmp_path, make):
    X, y, _ = _data()
    model = _model()
    before = model.get_weights()
    cb = make(tmp_path / "best.npz")
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*validation_data"):
        ma.fit(model, X, y, epochs=3, callbacks=[cb])
    _same_weights(model.get_weights(), before)
    assert not (tmp_path / "best.npz").exists()


def test_a_key_the_logs_lack_is_named_with_the_keys_they_hold(tmp_path):
    X, y, val = _data()
    with pytest.raises(ValueError, match=r"monitors 'val_f1', but the epoch logs hold epoch, "):
        ma.fit(
            _model(), X, y, epochs=2, validation_data=val, callbacks=[ReduceLROnPlateau("val_f1")]
        )
    # The validation_data hint only where it applies: not for a misspelt key, nor with
    # validation data given (it used to end every one of these errors).
    for monitor, kwargs in (("los", {}), ("val_f1", {"validation_data": val})):
        with pytest.raises(ValueError) as info:
            ma.fit(_model(), X, y, epochs=1, callbacks=[ReduceLROnPlateau(monitor)], **kwargs)
        assert "validation_data" not in str(info.value)
    with pytest.raises(ValueError, match="pass validation_data to fit"):
        ReduceLROnPlateau("val_f1").on_epoch_end(1, {"epoch": 1, "loss": 0.5})
    Xr, yr = make_data(np.random.default_rng(0), 30, [4, 3, 1], "squared_error")
    model = ma.MLP([4, 3, 1], loss="squared_error", backend="numpy", seed=0)
    best = ModelCheckpoint(tmp_path / "m", monitor="val_accuracy")
    with pytest.raises(ValueError, match="squared_error model does not log"):
        ma.fit(model, Xr, yr, epochs=1, validation_data=(Xr, yr), callbacks=[best])
    # Nor does a Poisson model: a 0.5 threshold on counts is no accuracy.
    counts = np.abs(yr).round()
    model = ma.MLP([4, 3, 1], ["tanh", "exp"], "poisson", backend="numpy", seed=0)
    with pytest.raises(ValueError, match="poisson model does not log"):
        ma.fit(model, Xr, counts, epochs=1, validation_data=(Xr, counts), callbacks=[best])
    history = ma.fit(model, Xr, counts, epochs=1, validation_data=(Xr, counts))
    assert "val_loss" in history and "val_accuracy" not in history


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: ModelCheckpoint(""), ValueError),
        (lambda: ModelCheckpoint("m.npz", mode="best"), ValueError),
        (lambda: ModelCheckpoint("m.npz", min_delta=-1), ValueError),
        (lambda: ReduceLROnPlateau(factor=1.0), ValueError),
        (lambda: ReduceLROnPlateau(factor=math.nan), ValueError),
        (lambda: ReduceLROnPlateau(patience=0), ValueError),
        (lambda: ReduceLROnPlateau(cooldown=1.5), TypeError),
        (lambda: ReduceLROnPlateau(min_lr=-1e-3), ValueError),
        (lambda: ReduceLROnPlateau(monitor=3), TypeError),
        (lambda: CSVLogger("log.csv", separator=";;"), ValueError),
        (lambda: EarlyStopping(mode="down"), ValueError),
    ],
)
def test_bad_arguments_are_refused(make, error):
    with pytest.raises(error):
        make()


# -- ReduceLROnPlateau -----------------------------------------------------------------------
def _plateau_run(cb, values):
    cb.on_train_begin(None)
    factors = []
    for epoch, value in enumerate(values, 1):
        cb.on_epoch_end(epoch, {"val_loss": value})
        factors.append(cb.current_factor)
    return factors


def test_reduce_on_plateau_follows_the_keras_rule():
    # Reduced after `patience` epochs without an improvement by more than min_delta, then
    # `cooldown` epochs in which nothing is counted.
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.1, cooldown=1)
    values = [1.0, 0.95, 0.92, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert _plateau_run(cb, values) == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125]
    assert cb.best == 0.5
    assert ReduceLROnPlateau(min_lr=0.03).lr_factor(0.1) == 1.0  # no reduction yet
    low = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.03)
    assert _plateau_run(low, [1.0, 1.0, 1.0, 1.0])[-1] == 0.125
    assert low.lr_factor(0.1) == pytest.approx(0.3)  # at min_lr: 0.03 / 0.1
    assert low.lr_factor(0.01) == 1.0  # a base rate below min_lr is never reduced


@pytest.mark.parametrize("schedule", [None, schedules.StepDecay(4, 0.5)])
def test_the_plateau_factor_multiplies_the_schedules_through_the_one_writer(schedule):
    X, y, _ = _data()
    optimizer = _WatchedSGD(0.1, momentum=0.9)
    plateau = ReduceLROnPlateau("flat", factor=0.5, patience=1, min_delta=0.0, mode="min")
    factors = []  # the plateau factor the next epoch uses

    def flat(epoch, logs):  # a metric that never improves after the first epoch
        logs["flat"] = 1.0

    h = ma.fit(
        _model(),
        X,
        y,
        epochs=8,
        batch_size=32,
        optimizer=optimizer,
        schedule=schedule,
        callbacks=[flat, plateau, lambda e, logs: factors.append(plateau.lr_factor(0.1))],
    )
    assert factors == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125]
    sched = [1.0 if schedule is None else schedule(0, e - 1) for e in range(1, 9)]
    assert h["lr"] == [0.1 * (s * f) for s, f in zip(sched, [1.0, *factors[:-1]])]
    assert set(optimizer.writers) == {"mlp_accel.training.step"} and optimizer.lr == 0.1


# -- CSVLogger -------------------------------------------------------------------------------
def test_the_csv_log_is_complete_after_every_epoch(tmp_path):
    X, y, val = _data()
    path = tmp_path / "log.csv"
    seen = []

    def read(epoch, logs):  # after the logger: the file on disk holds this epoch's row
        seen.append(_rows(path))

    h = ma.fit(_model(), X, y, epochs=4, validation_data=val, callbacks=[CSVLogger(path), read])
    columns = ["epoch", "loss", "lr", "time", "samples_per_sec", "val_loss", "val_accuracy"]
    assert path.read_text().splitlines()[0] == ",".join(columns)
    assert [len(rows) for rows in seen] == [1, 2, 3, 4]
    for key in columns:  # repr reads back as the same float
        assert [float(row[key]) for row in seen[-1]] == h[key]
    assert list(tmp_path.iterdir()) == [path]  # no temporary left


def test_the_csv_log_appends_under_the_same_header_and_refuses_another(tmp_path):
    X, y, _ = _data()
    path = tmp_path / "log.csv"
    ma.fit(_model(), X, y, epochs=2, callbacks=[CSVLogger(path, separator=";")])
    ma.fit(_model(), X, y, epochs=3, callbacks=[CSVLogger(path, separator=";", append=True)])
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("epoch;loss;lr") and lines[3].startswith("1;")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"cannot append to .*its columns are"):
        ma.fit(_model(), X, y, epochs=1, callbacks=[CSVLogger(path, append=True)])
    assert path.read_bytes() == before  # a failed run leaves the earlier file whole
    ma.fit(_model(), X, y, epochs=1, callbacks=[CSVLogger(path)])  # append=False: a new file
    assert len(path.read_text().splitlines()) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_gets_each_line_once(tmp_path):
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    got = []

    def reader():
        # One open: the fit keeps the FIFO open from its first row to its end, so a reader
        # like `cat` sees every line and then the end of file.
        with open(fifo) as f:
            got.append(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    X, y, _ = _data()
    ma.fit(_model(), X, y, epochs=3, callbacks=[CSVLogger(fifo)])
    thread.join(5)
    assert not thread.is_alive()  # the fit's end closed the FIFO
    lines = "".join(got).splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch,") and lines[3].startswith("3,")


# -- state in checkpoints: a resumed run equals an uninterrupted one ---------------------------
class _Crash(Exception):
    pass


def _run(tmp_path, tag, backend, epochs, resume=False, crash_after=None):
    X, y, val = _data()
    model = _model(backend, seed=1 if resume else 0)  # a resume takes the checkpoint's
    callbacks = [
        EarlyStopping(patience=6),
        ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1),
        ModelCheckpoint(tmp_path / f"best-{tag}.npz"),
        CSVLogger(tmp_path / f"log-{tag}.csv"),
    ]
    if crash_after is not None:

        def crash(epoch, logs):
            if epoch == crash_after:
                raise _Crash

        callbacks.append(crash)
    ck = tmp_path / f"ck-{tag}.npz"
    h = ma.fit(
        model,
        X,
        y,
        epochs=epochs,
        batch_size=24,
        optimizer=None if resume else ma.optim.Adam(0.02),
        validation_data=val,
        callbacks=callbacks,
        checkpoint=ck,
        checkpoint_every=3,
        resume_from=ck if resume else None,
    )
    return model, h, callbacks


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, backend):
    straight, h_straight, cbs = _run(tmp_path, "a", backend, 40)
    stopped = cbs[0].stopped_epoch
    # It stops after epoch 13; the rate is reduced after epoch 11 (epoch 12 is a cooldown).
    assert 13 < stopped < 40 and h_straight["lr"][11] < h_straight["lr"][10] == 0.02
    with pytest.raises(_Crash):  # killed after epoch 13: the last checkpoint is epoch 12's
        _run(tmp_path, "b", backend, 40, crash_after=13)
    assert len(_rows(tmp_path / "log-b.csv")) == 13
    written = (tmp_path / "log-b.csv").read_text().splitlines()
    resumed, h, cbs_b = _run(tmp_path, "b", backend, 40, resume=True)
    _same_weights(resumed.get_weights(), straight.get_weights())  # the best, restored
    for key in ("loss", "lr", "val_loss", "val_accuracy", "epoch"):
        assert h[key] == h_straight[key]
    assert cbs_b[0].stopped_epoch == stopped
    log = (tmp_path / "log-b.csv").read_text().splitlines()
    assert log[:13] == written[:13]  # the checkpoint's rows, as the first run wrote them
    assert _untimed(_rows(tmp_path / "log-b.csv")) == _untimed(_rows(tmp_path / "log-a.csv"))
    best_a, best_b = (ma.load(tmp_path / f"best-{t}.npz") for t in "ab")
    _same_weights(best_a.get_weights(), best_b.get_weights())
    assert ma.io.load_metadata(tmp_path / "best-a.npz") == ma.io.load_metadata(
        tmp_path / "best-b.npz"
    )


def test_a_file_named_another_way_on_resume_keeps_its_state(tmp_path, monkeypatch):
    """``log.csv`` and ``./log.csv`` are one file: the resumed log goes on from the saved rows."""
    monkeypatch.chdir(tmp_path)
    X, y, _ = _data()
    ma.fit(_model(), X, y, epochs=3, callbacks=[CSVLogger("log.csv")], checkpoint="ck.npz")
    ma.fit(_model(), X, y, epochs=5, callbacks=[CSVLogger("./log.csv")], resume_from="ck.npz")
    assert [row["epoch"] for row in _rows("log.csv")] == ["1", "2", "3", "4", "5"]
    assert ModelCheckpoint("./a/../b.npz").state_key == ModelCheckpoint("b.npz").state_key


def test_the_checkpoint_holds_each_callbacks_state(tmp_path):
    _, h, _ = _run(tmp_path, "a", "numpy", 5)
    states = ma.io.load_checkpoint(tmp_path / "ck-a.npz")["state"]["callbacks"]
    assert set(states) == {
        "EarlyStopping(val_loss)",
        "ReduceLROnPlateau(val_loss)",
        f"ModelCheckpoint({tmp_path / 'best-a.npz'}, val_loss)",
        f"CSVLogger({tmp_path / 'log-a.csv'})",
    }
    early = states["EarlyStopping(val_loss)"]
    assert early["best"] == min(h["val_loss"]) and len(early["best_params"]) == 4
    assert isinstance(early["best_params"][0], np.ndarray)
    assert (
        states[f"CSVLogger({tmp_path / 'log-a.csv'})"]["text"]
        == (tmp_path / "log-a.csv").read_text()
    )


def _edit_state(ck, key, edit):
    with np.load(ck) as npz:
        arrays = dict(npz)
    meta = json.loads(arrays["__meta__"].tobytes())
    edit(meta["user"]["checkpoint"]["callbacks"][key])
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(ck, **arrays)


@pytest.mark.parametrize(
    "key, edit, match",
    [
        ("ReduceLROnPlateau(val_loss)", lambda s: s.update(wait=-1), "wait -1"),
        ("ReduceLROnPlateau(val_loss)", lambda s: s.update(current_factor=2.0), "in \\[0, 1\\]"),
        ("EarlyStopping(val_loss)", lambda s: s.pop("best"), "lacks best"),
        ("EarlyStopping(val_loss)", lambda s: s["best_params"].pop(), "not 4 arrays"),
    ],
)
def test_a_malformed_state_is_refused_before_the_model_is_touched(tmp_path, key, edit, match):
    _run(tmp_path, "a", "numpy", 5)
    _edit_state(tmp_path / "ck-a.npz", key, edit)
    X, y, val = _data()
    model = _model(seed=7)
    before = model.get_weights()
    callbacks = [EarlyStopping(), ReduceLROnPlateau()]
    with pytest.raises(ValueError, match=f"ck-a.npz: the state of callback .*{match}"):
        ma.fit(
            model,
            X,
            y,
            epochs=6,
            validation_data=val,
            resume_from=tmp_path / "ck-a.npz",
            callbacks=callbacks,
        )
    _same_weights(model.get_weights(), before)


class _Counter(ma.callbacks.Callback):
    """A user's stateful callback: JSON and arrays, NumPy scalars among them."""

    def __init__(self):
        self.seen, self.sums = 0, np.zeros(2)

    def on_epoch_end(self, epoch, logs):
        self.seen += 1
        self.sums = self.sums + np.array([logs["loss"], epoch])

    def state_dict(self):
        return {"seen": np.int64(self.seen), "sums": self.sums, "tags": ("a", None)}

    def load_state_dict(self, state):
        self.seen, self.sums = state["seen"], state["sums"]


def test_a_users_callback_keeps_its_state_and_a_new_one_starts_afresh(tmp_path):
    X, y, _ = _data()
    ck = tmp_path / "ck.npz"
    first = _Counter()
    ma.fit(_model(), X, y, epochs=3, callbacks=[first], checkpoint=ck)
    later, fresh = _Counter(), ReduceLROnPlateau("loss")  # not in the checkpoint: afresh
    ma.fit(_model(), X, y, epochs=5, resume_from=ck, callbacks=[later, fresh])
    assert later.seen == 5 and later.sums[1] == 15 and fresh.current_factor == 1.0

    class Bad(_Counter):
        def state_dict(self):
            return {"when": object()}

    with pytest.raises(TypeError, match=r"callback .*Bad holds a object"):
        ma.fit(_model(), X, y, epochs=1, callbacks=[Bad()], checkpoint=tmp_path / "bad.npz")


# -- the command -----------------------------------------------------------------------------
def _cli(tmp_path, *extra):
    from mlp_accel.cli import main

    base = ["train", "--dataset", "iris", "--backend", "numpy", "--no-progress", "--seed", "2"]
    base += ["--layers", "4,8,3", "--dtype", "float64", "--batch-size", "16", "--lr", "0.05"]
    return main([*base, *extra])


def test_the_command_saves_the_best_model_reduces_the_rate_and_logs_csv(tmp_path, capsys):
    out = {name: str(tmp_path / name) for name in ("best.npz", "log.csv", "ck.npz")}
    options = ["--save-best", out["best.npz"], "--reduce-lr-on-plateau", "0.5:2"]
    options += ["--csv-log", out["log.csv"], "--checkpoint", out["ck.npz"]]
    assert _cli(tmp_path, *options, "--epochs", "12") == 0
    rows = _rows(out["log.csv"])
    assert len(rows) == 12 and "val_loss" in rows[0]
    about = ma.io.load_metadata(out["best.npz"])["model_checkpoint"]
    best = min(float(row["val_loss"]) for row in rows)
    assert about["value"] == best and about["monitor"] == "val_loss"
    # Resumed to 20 epochs: the same as 20 epochs at once.
    assert _cli(tmp_path, *options, "--epochs", "20", "--resume", out["ck.npz"]) == 0
    resumed = _rows(out["log.csv"])
    straight = {name: str(tmp_path / ("s-" + name)) for name in out}
    options_s = ["--save-best", straight["best.npz"], "--reduce-lr-on-plateau", "0.5:2"]
    options_s += ["--csv-log", straight["log.csv"], "--checkpoint", straight["ck.npz"]]
    assert _cli(tmp_path, *options_s, "--epochs", "20") == 0
    assert _untimed(resumed) == _untimed(_rows(straight["log.csv"]))
    assert resumed[:12] == rows
    assert len({row["lr"] for row in resumed}) > 1  # the plateau reduced the rate
    _same_weights(
        ma.load(out["best.npz"]).get_weights(), ma.load(straight["best.npz"]).get_weights()
    )
    capsys.readouterr()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--reduce-lr-on-plateau", "2"], "strictly between 0 and 1"),
        (["--reduce-lr-on-plateau", "0.5:x"], "positive integer"),
        (["--save-best", "/no/such/dir/b.npz"], "--save-best: directory"),
        (["--csv-log", "/no/such/dir/l.csv"], "--csv-log: directory"),
        (["--monitor", "time"], "invalid choice"),
    ],
)
def test_the_commands_errors_are_one_line(tmp_path, capsys, options, message):
    try:
        status = _cli(tmp_path, "--epochs", "2", *options)
    except SystemExit as exc:  # a usage error: the usage line, then the error
        status = exc.code
    err = capsys.readouterr().err
    assert status != 0 and message in err.strip().splitlines()[-1]
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_the_command_monitors_the_training_loss_on_memory_mapped_data(tmp_path, capsys):
    from mlp_accel.cli import main

    X, y = make_data(np.random.default_rng(0), 200, [4, 8, 1], "binary_cross_entropy")
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    base = ["train", "--data", str(tmp_path / "d.npy"), "--backend", "numpy", "--no-progress"]
    base += ["--layers", "4,8,1", "--epochs", "3", "--save-best", str(tmp_path / "b.npz")]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --monitor loss" in err
    assert main([*base, "--monitor", "loss"]) == 0
    assert ma.io.load_metadata(tmp_path / "b.npz")["model_checkpoint"]["monitor"] == "loss"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--csv-log", "{dir}"], "--csv-log: {dir} is a directory"),
        (["--save-best", "{dir}"], "--save-best: {dir} is a directory"),
        (["--save", "{dir}"], "--save: {dir} is a directory"),
        (["--checkpoint", "{dir}/no/ck.npz"], "--checkpoint: directory {dir}/no does not exist"),
        (["--save", "{dir}/m.npz", "--save-best", "{dir}/./m.npz"], "--save and --save-best"),
        (["--save-best", "{dir}/m.npz", "--checkpoint", "{dir}/m.npz"], "--save-best and --ch"),
        (["--csv-log", "{dir}/c.png", "--plot", "{dir}/c.png"], "--csv-log and --plot"),
    ],
)
def test_outputs_that_cannot_be_written_are_refused_before_training(
    tmp_path, capsys, monkeypatch, options, message
):
    # Before the fix these failed after the last epoch (--save, a --checkpoint written at the
    # end) or destroyed each other's file (the same path twice).
    import mlp_accel.training.loop as loop

    def no_fit(*args, **kwargs):
        raise AssertionError("trained before refusing the options")

    monkeypatch.setattr(loop, "fit", no_fit)
    monkeypatch.setattr(ma, "fit", no_fit)
    options = [o.format(dir=tmp_path) for o in options]
    assert _cli(tmp_path, "--epochs", "2", *options) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(dir=tmp_path) in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_an_output_over_its_training_data(tmp_path, capsys):
    from mlp_accel.cli import main

    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(20)))
    before = data.read_bytes()
    args = ["train", "--data", str(data), "--backend", "numpy", "--no-progress", "--epochs", "2"]
    assert main([*args, "--csv-log", str(data)]) == 1
    assert "--data and --csv-log name the same file" in capsys.readouterr().err
    assert data.read_bytes() == before
