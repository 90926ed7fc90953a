"""Divergence after any step, hyperparameter and count validation, and non-finite messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import schedules
from mlp_accel._validation import check_count, check_real
from mlp_accel.batches import ScaledRows, check_sample_weight
from mlp_accel.callbacks import EarlyStopping

from .helpers import make_data


def _model(backend_name="numpy", dtype="float64", seed=0):
    return ma.MLP([3, 5, 1], backend=backend_name, dtype=dtype, seed=seed)


def _overflowing_run(backend_name="numpy"):
    """A float32 logistic regression whose one full-batch SGD step overflows: its loss comes
    from the initial weights and is finite, but the weights after the step are not."""
    model = ma.MLP([3, 1], backend=backend_name, dtype="float32", seed=0)
    X, y = _data(scale=100.0)
    return model, X, y, ma.optim.SGD(lr=3e38)


def _data(scale=1.0):
    X, y = make_data(np.random.default_rng(0), 40, [3, 1], "binary_cross_entropy")
    return X * scale, y


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


# -- item 3: divergence ---------------------------------------------------------------------
def test_divergence_in_the_last_step_is_caught(backend_name):
    # An overflow in the last step must raise too, not return inf/NaN weights.
    model, X, y, optimizer = _overflowing_run(backend_name)
    before = model.get_weights()
    with pytest.raises(ma.TrainingDivergedError, match="weights became NaN or infinite"):
        ma.fit(model, X, y, epochs=1, optimizer=optimizer)
    assert _same(model.get_weights(), before)


@pytest.mark.parametrize("budget", [1e-12, 1e9])
def test_short_epochs_roll_back_to_the_last_state_checked_finite(monkeypatch, budget):
    # Epochs too short to be worth a copy each are checked (and copied) every few epochs; a
    # divergence goes back to the last copy, and the error names the epoch it is from.
    from mlp_accel.training import loop

    monkeypatch.setattr(loop._Rollback, "BUDGET", budget)
    X, y = _data()
    model, optimizer = _model(), ma.optim.SGD(0.1)
    blow_up = lambda step, epoch: 1.0 if epoch < 30 else math.inf  # noqa: E731
    with pytest.raises(ma.TrainingDivergedError) as caught:
        ma.fit(model, X, y, epochs=60, optimizer=optimizer, schedule=blow_up)
    message = str(caught.value)
    diverged = int(message.split(" in epoch ")[1].split(";")[0])
    assert diverged in (31, 32)  # weights NaN after epoch 31's step, its loss finite
    if budget > 1:  # every epoch is checked: the diverging epoch is undone, no more
        assert "from before that epoch" in message
        kept = diverged
    else:  # nothing checked since the start
        assert "from before epoch 1." in message
        kept = 1
    twin = _model()
    if kept > 1:
        ma.fit(twin, X, y, epochs=kept - 1, optimizer=ma.optim.SGD(0.1), schedule=blow_up)
    assert _same(model.get_weights(), twin.get_weights())
    assert optimizer.t == kept - 1


def test_clip_norm_inf_means_no_clipping(backend_name):
    X, y = _data()
    clipped, plain = _model(backend_name), _model(backend_name)
    opts = dict(epochs=2, batch_size=8, shuffle=False, optimizer=None)
    ma.fit(clipped, X, y, clip_norm=float("inf"), **opts)
    ma.fit(plain, X, y, **opts)
    for a, b in zip(clipped.get_weights(), plain.get_weights()):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_train_step_with_clip_norm_inf_stays_finite():
    model = _model()
    X, y = model.prepare(*_data())
    model.train_step(X, y, ma.optim.SGD(0.1), clip_norm=math.inf)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_schedule_that_blows_up_the_rate_is_caught_and_undone():
    model = _model()
    optimizer = ma.optim.Adam(0.01)
    X, y = _data()
    ma.fit(model, X, y, epochs=1, batch_size=10, optimizer=optimizer)
    before, t_before = model.get_weights(), optimizer.t
    m_before = [model.backend.to_numpy(m).copy() for m in optimizer.m]
    with pytest.raises(ma.TrainingDivergedError, match="epoch 1"):
        ma.fit(model, X, y, epochs=2, batch_size=10, optimizer=optimizer,
               schedule=lambda step, epoch: math.inf)  # fmt: skip
    assert _same(model.get_weights(), before)
    # the optimizer's state is rolled back with the weights, so training can go on
    assert optimizer.t == t_before
    assert _same([model.backend.to_numpy(m) for m in optimizer.m], m_before)
    assert optimizer.lr == 0.01
    ma.fit(model, X, y, epochs=1, batch_size=10, optimizer=optimizer)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_divergence_is_never_checkpointed(tmp_path):
    model, X, y, optimizer = _overflowing_run()
    path = tmp_path / "ck.npz"
    with pytest.raises(ma.TrainingDivergedError):
        ma.fit(model, X, y, epochs=1, optimizer=optimizer, checkpoint=path)
    assert not path.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ma.optim.SGD(lr=math.inf),
        lambda: ma.optim.SGD(lr=math.nan),
        lambda: ma.optim.SGD(lr=0.0),
        lambda: ma.optim.SGD(0.1, momentum=math.nan),
        lambda: ma.optim.SGD(0.1, momentum=1.0),
        lambda: ma.optim.Adam(lr=math.inf),
        lambda: ma.optim.Adam(beta1=math.nan),
        lambda: ma.optim.Adam(beta2=1.0),
        lambda: ma.optim.Adam(eps=math.inf),
        lambda: ma.optim.Adam(eps=0.0),
        lambda: schedules.StepDecay(2, gamma=math.nan),
        lambda: schedules.StepDecay(0),
        lambda: schedules.Cosine(math.inf),
        lambda: schedules.Cosine(10, min_factor=math.nan),
        lambda: schedules.InvScaling(math.nan),
        lambda: schedules.InvScaling(-1.0),
        lambda: schedules.Warmup(math.nan),
        lambda: schedules.Warmup(2, start_factor=math.inf),
        lambda: schedules.get_schedule("cosine", 10, warmup=math.nan),
        lambda: schedules.get_schedule("cosine", 10, warmup=-1),
        lambda: schedules.linear_scaling(math.inf, 256),
        lambda: EarlyStopping(min_delta=math.nan),
    ],
)
def test_non_finite_or_out_of_range_hyperparameters_are_refused(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=math.nan), "alpha"),
        (dict(alpha=math.inf), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(clip_norm=math.nan), "clip_norm"),
        (dict(clip_norm=0.0), "clip_norm"),
        (dict(clip_norm=-math.inf), "clip_norm"),
    ],
)
def test_fit_refuses_bad_alpha_and_clip_norm(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ma.fit(_model(), *_data(), epochs=1, **kwargs)


def test_fit_refuses_a_learning_rate_set_to_inf_after_construction():
    optimizer = ma.optim.SGD(0.1)
    optimizer.lr = math.inf
    with pytest.raises(ValueError, match="learning rate"):
        ma.fit(_model(), *_data(), epochs=1, optimizer=optimizer)


# -- item 13: counts and optimizer names ----------------------------------------------------
def test_counts_accept_integral_numpy_scalars():
    X, y = _data()
    model = ma.MLP([np.int64(3), np.int32(4), np.uint8(1)], backend="numpy", seed=0)
    assert model.layers == (3, 4, 1) and all(type(w) is int for w in model.layers)
    history = ma.fit(
        model,
        X,
        y,
        epochs=np.int64(2),
        batch_size=np.int64(8),
        accumulate=np.int32(2),
        checkpoint_every=np.int16(1),
        callbacks=[EarlyStopping("loss", patience=np.int64(3))],
    )
    assert history.n_epochs == 2
    assert schedules.StepDecay(np.int64(2)).step_size == 2
    assert schedules.linear_scaling(0.1, np.int64(512)) == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["epochs", "batch_size", "accumulate", "checkpoint_every"])
@pytest.mark.parametrize("bad", [True, 2.0, np.float64(2.0), "2"])
def test_counts_refuse_bools_and_floats(name, bad):
    with pytest.raises(TypeError, match=name):
        ma.fit(_model(), *_data(), **{"epochs": 1, name: bad})


@pytest.mark.parametrize("name", ["epochs", "batch_size", "accumulate", "local_steps"])
def test_counts_refuse_zero(name):
    with pytest.raises(ValueError, match=name):
        ma.fit(_model(), *_data(), **{"epochs": 1, name: np.int64(0)})


@pytest.mark.parametrize("layers", [[3, 4.0, 1], [3, True, 1], [3, "4", 1], "341"])
def test_layer_widths_refuse_floats_bools_and_strings(layers):
    with pytest.raises(TypeError, match="layers"):
        ma.MLP(layers, backend="numpy")


def test_patience_and_step_size_refuse_floats():
    with pytest.raises(TypeError, match="patience"):
        EarlyStopping(patience=2.5)
    with pytest.raises(TypeError, match="step_size"):
        schedules.StepDecay(1.5)


def test_shared_validators():
    assert check_count(np.int64(5), "n") == 5
    assert check_count(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match="bool"):
        check_count(np.True_, "n")
    assert check_real(np.float32(0.5), "x", 0.0, 1.0) == 0.5
    assert check_real(math.inf, "x", 0.0, allow_inf=True) == math.inf
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        check_real(0.0, "x", 0.0, 1.0, low_open=True)
    with pytest.raises(TypeError):
        check_real(1j, "x")


def test_fit_takes_optimizer_names():
    X, y = _data()
    model = _model()
    history = ma.fit(model, X, y, epochs=2, optimizer="adam")
    assert history["lr"][-1] == pytest.approx(1e-3)
    ma.fit(model, X, y, epochs=1, optimizer="SGD")
    valid = "adagrad, adam, adamw, lamb, lars, rmsprop, sgd"
    with pytest.raises(ValueError, match=f"valid optimizers: {valid}"):
        ma.fit(model, X, y, epochs=1, optimizer="adadelta")
    with pytest.raises(TypeError, match="optimizer"):
        ma.fit(model, X, y, epochs=1, optimizer=3)
    with pytest.raises(TypeError, match=valid):
        ma.optim.get_optimizer(None)


# -- item 14: say inf when it is inf ----------------------------------------------------------
def test_scaled_memmap_reports_inf_as_inf(tmp_path):
    table = np.ones((50, 3))
    table[7, 1] = np.inf
    np.save(tmp_path / "t.npy", table)
    data = np.load(tmp_path / "t.npy", mmap_mode="r")
    # statistics that saw the inf themselves: the inf is named, the rows never come out NaN
    rows = ScaledRows(data, np.array([1.0, np.inf, 1.0]), np.array([1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="contain inf") as info:
        rows[0:10]
    assert "NaN" not in str(info.value)
    with pytest.raises(ValueError, match="statistics are not finite"):
        rows[10:20]


def test_memmap_inf_reported_as_infinity_in_training(tmp_path):
    table = np.ones((100, 4))
    table[70, 2] = np.inf
    np.save(tmp_path / "bad.npy", table)
    data = np.load(tmp_path / "bad.npy", mmap_mode="r")
    model = ma.MLP([3, 1], loss="squared_error", backend="numpy", seed=0)
    with pytest.raises(ValueError, match="inf") as info:
        ma.fit(model, data[:, :-1], data[:, -1], epochs=1, batch_size=32)
    assert "NaN" not in str(info.value)


def test_weight_and_sample_weight_messages_name_what_is_wrong():
    model = _model()
    weights = model.get_weights()
    weights[0][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"W1 contains inf$"):
        model.set_weights(weights)
    weights[0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"W1 contains NaN$"):
        model.set_weights(weights)
    with pytest.raises(ValueError, match=r"sample_weight contains NaN and inf"):
        check_sample_weight([1.0, np.nan, np.inf], 3)


def test_plain_arrays_are_checked_like_scikit_learn_does(monkeypatch):
    # NumPy arrays skip scikit-learn's check_array (a millisecond per call, twice per fit):
    # the same messages, and finite values whose sum overflows are still accepted.
    from sklearn.utils import check_array

    from mlp_accel._validation import check_inputs, check_targets

    for bad in (np.nan, np.inf, -np.inf):
        X = np.ones((5, 3))
        X[2, 1] = bad
        for data, name in ((X, "X"), (X[:, 1].copy(), "y")):
            with pytest.raises(ValueError) as ours:
                if name == "X":
                    check_inputs(data, 3, "float64")
                else:
                    check_targets(data, 5, 1, "squared_error", "float64")
            with pytest.raises(ValueError) as theirs:
                check_array(data, ensure_2d=False, input_name=name)
            assert str(ours.value) == str(theirs.value)
    huge = np.full((4, 2), 3e38, dtype=np.float32)  # finite; the sum overflows float32
    assert check_inputs(huge, 2, "float32") is not None
    too_big = np.array([[1e39, 0.0]])  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="infinity or a value too large"):
        check_inputs(too_big, 2, "float32")
