"""A resume continues the run it resumes: the checkpoint's batch size, accumulation and
schedule when they are left out, a ValueError when given ones differ (issue 22, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import schedules
from mlp_accel.training.resume import NOT_GIVEN, schedule_from_spec, schedule_spec

from .helpers import make_data

WIDTHS, ACTS, LOSS = [4, 8, 6, 3], ["tanh", "relu", "softmax"], "cross_entropy"
RUN = dict(batch_size=32, accumulate=2, schedule=schedules.Warmup(1, after=schedules.Cosine(9)))


def _model(seed=4):
    return ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", dtype="float64", seed=seed)


def _data():
    return make_data(np.random.default_rng(3), 120, WIDTHS, LOSS)


def _first_half(tmp_path, **run):
    X, y = _data()
    ck = tmp_path / "ck.npz"
    model = _model()
    ma.fit(model, X, y, epochs=5, optimizer=ma.optim.Adam(0.01), checkpoint=ck, **run)
    return X, y, ck


def test_a_resume_without_the_run_options_continues_the_run_bit_for_bit(tmp_path):
    X, y = _data()
    straight = _model()
    h_straight = ma.fit(straight, X, y, epochs=10, optimizer=ma.optim.Adam(0.01), **RUN)
    _, _, ck = _first_half(tmp_path, **RUN)
    resumed = _model(seed=99)  # other weights and RNG: the checkpoint restores them
    epochs_run = []
    h = ma.fit(
        resumed,
        X,
        y,
        epochs=10,
        resume_from=ck,
        callbacks=[lambda epoch, logs: epochs_run.append(epoch)],
    )
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h["loss"] == h_straight["loss"] and h["lr"] == h_straight["lr"]
    assert epochs_run == [6, 7, 8, 9, 10]


TABLE_OPTIMIZERS = {
    "adamw": lambda: ma.optim.AdamW(0.01, weight_decay=0.1),
    "rmsprop": lambda: ma.optim.RMSprop(0.005, momentum=0.5, centered=True, weight_decay=0.01),
    "adagrad": lambda: ma.optim.Adagrad(0.05, initial_accumulator_value=0.1),
    "lars": lambda: ma.optim.LARS(0.5, trust_coefficient=0.01, nesterov=True),
    "lamb": lambda: ma.optim.LAMB(0.01, weight_decay=0.01, decay_biases=True),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", list(TABLE_OPTIMIZERS))
def test_every_optimizer_resumes_bit_for_bit(tmp_path, name, backend):
    """The state and hyperparameters of each optimizer of the table round-trip through a
    checkpoint: 10 epochs straight equal 5, then a resume (rebuilding the optimizer from the
    checkpoint) to 10."""
    X, y = _data()

    def model(seed):
        return ma.MLP(WIDTHS, ACTS, LOSS, backend=backend, dtype="float64", seed=seed)

    straight = model(4)
    ma.fit(straight, X, y, epochs=10, optimizer=TABLE_OPTIMIZERS[name](), **RUN)
    ck = tmp_path / "ck.npz"
    ma.fit(model(4), X, y, epochs=5, optimizer=TABLE_OPTIMIZERS[name](), checkpoint=ck, **RUN)
    resumed = model(99)
    ma.fit(resumed, X, y, epochs=10, resume_from=ck)
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_built_in_schedules_survive_the_checkpoints_json():
    assert schedule_spec(None) is None and schedule_spec(schedules.Constant()) is None
    for schedule in (
        schedules.StepDecay(3, 0.5),
        schedules.Cosine(7, 0.1),
        schedules.InvScaling(0.25),
        schedules.Warmup(2, after=schedules.StepDecay(2), start_factor=0.1),
    ):
        spec = json.loads(json.dumps(schedule_spec(schedule)))
        again = schedule_from_spec(spec)
        assert type(again) is type(schedule) and repr(again) == repr(schedule)


@pytest.mark.parametrize(
    "given, match",
    [
        ({"batch_size": 64}, "batch_size=32"),
        ({"batch_size": None}, "batch_size=32, not None"),
        ({"accumulate": 1}, "accumulate=2"),
        ({"schedule": None}, "schedule=Warmup"),
        ({"schedule": schedules.Warmup(1, after=schedules.Cosine(19))}, "Cosine"),
    ],
)
def test_a_value_that_differs_from_the_checkpoints_is_refused(tmp_path, given, match):
    X, y, ck = _first_half(tmp_path, **RUN)
    model = _model(seed=99)
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        ma.fit(model, X, y, epochs=10, resume_from=ck, **given)
    np.testing.assert_array_equal(model.get_weights()[0], before[0])  # untouched


def test_the_same_values_given_again_are_accepted(tmp_path):
    X, y, ck = _first_half(tmp_path, **RUN)
    ma.fit(_model(), X, y, epochs=6, resume_from=ck, batch_size=np.int64(32), accumulate=2)
    ma.fit(_model(), X, y, epochs=6, resume_from=ck, **RUN)


def test_a_full_batch_run_resumes_full_batch(tmp_path):
    X, y, ck = _first_half(tmp_path)
    assert ma.io.load_checkpoint(ck)["state"]["run"].batch_size is None
    ma.fit(_model(), X, y, epochs=6, resume_from=ck, batch_size=None)
    with pytest.raises(ValueError, match="batch_size=None, not 8"):
        ma.fit(_model(), X, y, epochs=6, resume_from=ck, batch_size=8)


def test_a_custom_schedule_must_be_given_again(tmp_path):
    def halve(step, epoch):
        return 0.5

    X, y, ck = _first_half(tmp_path, schedule=halve)
    with pytest.raises(ValueError, match="give it again as schedule="):
        ma.fit(_model(), X, y, epochs=6, resume_from=ck)
    ma.fit(_model(), X, y, epochs=6, resume_from=ck, schedule=halve)
    with pytest.raises(ValueError, match="schedule="):
        ma.fit(_model(), X, y, epochs=6, resume_from=ck, schedule=schedules.Cosine(3))


def _rewritten(ck, edit):
    with np.load(ck) as npz:
        arrays = dict(npz)
    meta = json.loads(arrays["__meta__"].tobytes())
    edit(meta["user"]["checkpoint"])
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(ck, **arrays)
    return ck


def test_a_checkpoint_without_run_settings_needs_them_given(tmp_path):
    X, y, ck = _first_half(tmp_path, **RUN)
    _rewritten(ck, lambda state: state.pop("run"))
    assert ma.io.load_checkpoint(ck)["state"]["run"] is None
    with pytest.raises(ValueError, match="does not record its run's accumulate, schedule"):
        ma.fit(_model(), X, y, epochs=6, resume_from=ck, batch_size=32)
    ma.fit(_model(), X, y, epochs=6, resume_from=ck, **RUN)


@pytest.mark.parametrize(
    "run, match",
    [
        ({"batch_size": 0, "accumulate": 1, "schedule": None}, "batch_size"),
        ({"batch_size": 8, "accumulate": "2", "schedule": None}, "accumulate"),
        ({"batch_size": 8, "accumulate": 1, "schedule": {"name": "os.system"}}, "unknown"),
        (
            {"batch_size": 8, "accumulate": 1, "schedule": {"name": "Cosine", "params": {}}},
            "invalid schedule",
        ),
        ([8, 1], "not a mapping"),
    ],
)
def test_malformed_run_settings_are_refused(tmp_path, run, match):
    _, _, ck = _first_half(tmp_path)
    _rewritten(ck, lambda state: state.update(run=run))
    with pytest.raises(ValueError, match=match):
        ma.io.load_checkpoint(ck)


def test_the_default_is_not_none():
    assert repr(NOT_GIVEN) == "NOT_GIVEN" and NOT_GIVEN is not None


def test_the_cli_resume_takes_the_run_and_refuses_another(tmp_path, capsys):
    from mlp_accel.cli import main

    X, y = _data()
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    base = ["train", "--data", str(tmp_path / "d.npy"), "--backend", "numpy", "--no-progress"]
    base += ["--layers", "4,8,3", "--checkpoint", str(tmp_path / "ck.npz"), "--seed", "0"]
    run = ["--batch-size", "16", "--accumulate", "2", "--schedule", "cosine"]
    assert main([*base, *run, "--epochs", "2"]) == 0
    resume = [*base, "--resume", str(tmp_path / "ck.npz")]
    assert main([*resume, "--epochs", "4"]) == 0
    state = ma.io.load_checkpoint(tmp_path / "ck.npz")["state"]
    assert state["epoch"] == 4 and state["run"].batch_size == 16
    capsys.readouterr()
    assert main([*resume, "--epochs", "5", "--batch-size", "64"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size=16, not 64" in err


def test_a_schedule_ending_at_zero_leaves_a_loadable_checkpoint(tmp_path):
    X, y, ck = _first_half(tmp_path, schedule=schedules.Cosine(5))
    assert ma.io.load_checkpoint(ck)["optimizer"]["hyperparameters"]["lr"] == 0.01
    ma.fit(_model(), X, y, epochs=6, resume_from=ck)
