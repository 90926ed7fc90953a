"""Large-batch training: accumulation, memory maps, iterables, schedules, penalties,
clipping, early stopping and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import schedules
from mlp_accel.optim import SGD
from mlp_accel.training import TrainingStep

from .helpers import make_data

WIDTHS, ACTS, LOSS = [4, 8, 6, 3], ["tanh", "relu", "softmax"], "cross_entropy"


def _model(backend_name, seed=0, dtype="float64"):
    return ma.MLP(WIDTHS, ACTS, LOSS, backend=backend_name, dtype=dtype, seed=seed)


def _assert_same_weights(a, b, rtol=1e-12):
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("accumulate", [2, 3, 7])
def test_accumulation_equals_the_full_batch(backend_name, accumulate):
    X, y = make_data(np.random.default_rng(0), 50, WIDTHS, LOSS)
    full, acc = _model(backend_name), _model(backend_name)
    h_full = ma.fit(
        full, X, y, epochs=3, batch_size=25, optimizer=ma.optim.Adam(0.01), shuffle=False
    )
    h_acc = ma.fit(
        acc,
        X,
        y,
        epochs=3,
        batch_size=25,
        optimizer=ma.optim.Adam(0.01),
        shuffle=False,
        accumulate=accumulate,
    )
    _assert_same_weights(full, acc, rtol=1e-10)
    np.testing.assert_allclose(h_full["loss"], h_acc["loss"], rtol=1e-12)


def test_memmap_training_reads_blocks_and_matches_in_memory(backend_name, tmp_path):
    X, y = make_data(np.random.default_rng(1), 300, WIDTHS, LOSS)
    table = np.column_stack([X, y]).astype(np.float64)
    np.save(tmp_path / "big.npy", table)
    data = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert isinstance(data, np.memmap)
    mm, ram = _model(backend_name), _model(backend_name)
    ma.fit(
        mm,
        data[:, :-1],
        data[:, -1],
        epochs=2,
        batch_size=64,
        shuffle=False,
        optimizer=ma.optim.SGD(0.1),
    )
    ma.fit(ram, X, y, epochs=2, batch_size=64, shuffle=False, optimizer=ma.optim.SGD(0.1))
    _assert_same_weights(mm, ram, rtol=1e-10)
    # shuffled blocks still visit every row once per epoch and train
    history = ma.fit(
        mm, data[:, :-1], data[:, -1], epochs=5, batch_size=64, optimizer=ma.optim.Adam(0.01)
    )
    assert history["loss"][-1] < history["loss"][0]


def test_memmap_with_nan_is_caught_per_block(tmp_path):
    table = np.ones((100, 5))
    table[70, 2] = np.nan
    table[:, -1] = np.arange(100) % 3
    np.save(tmp_path / "bad.npy", table)
    data = np.load(tmp_path / "bad.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="NaN"):
        ma.fit(_model("numpy"), data[:, :-1], data[:, -1], epochs=1, batch_size=32)


def test_iterable_of_batches(backend_name):
    X, y = make_data(np.random.default_rng(2), 90, WIDTHS, LOSS)
    batches = [(X[i : i + 30], y[i : i + 30]) for i in range(0, 90, 30)]
    it, ram = _model(backend_name), _model(backend_name)
    h = ma.fit(it, batches, epochs=2, optimizer=ma.optim.Adam(0.01))
    ma.fit(ram, X, y, epochs=2, batch_size=30, shuffle=False, optimizer=ma.optim.Adam(0.01))
    _assert_same_weights(it, ram, rtol=1e-10)
    assert h["samples_per_sec"][0] > 0
    with pytest.raises(ValueError, match="one-shot iterator"):
        ma.fit(it, iter(batches), epochs=2)
    with pytest.raises(ValueError, match="y=None"):
        ma.fit(it, batches, y, epochs=1)


def test_resume_equals_a_straight_run(backend_name, tmp_path):
    X, y = make_data(np.random.default_rng(3), 120, WIDTHS, LOSS)
    kwargs = dict(batch_size=32, shuffle=True, schedule=schedules.Cosine(10), alpha=1e-3)
    straight = _model(backend_name, seed=4)
    h_straight = ma.fit(straight, X, y, epochs=10, optimizer=ma.optim.Adam(0.01), **kwargs)

    ck = tmp_path / "ck.npz"
    first = _model(backend_name, seed=4)
    ma.fit(first, X, y, epochs=5, optimizer=ma.optim.Adam(0.01), checkpoint=ck, **kwargs)
    resumed = _model(backend_name, seed=99)  # different initial weights and RNG: all restored
    h_resumed = ma.fit(resumed, X, y, epochs=10, resume_from=ck, **kwargs)
    _assert_same_weights(straight, resumed, rtol=1e-12)
    assert h_resumed.n_epochs == 10 and h_resumed["epoch"] == list(range(1, 11))
    np.testing.assert_allclose(h_resumed["loss"], h_straight["loss"], rtol=1e-12)


def test_checkpoint_every_and_crash_mid_save_keeps_the_last_good_one(tmp_path, monkeypatch):
    X, y = make_data(np.random.default_rng(5), 40, WIDTHS, LOSS)
    ck = tmp_path / "ck.npz"
    model = _model("numpy")
    ma.fit(model, X, y, epochs=4, checkpoint=ck, checkpoint_every=2)
    state = ma.io.load_checkpoint(ck)
    assert state["state"]["epoch"] == 4
    good = ck.read_bytes()

    calls = {"n": 0}
    real_savez = np.savez

    def crash_on_second(file, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            file.write(b"partial")
            raise KeyboardInterrupt  # killed mid-save
        real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ma.fit(model, X, y, epochs=8, checkpoint=ck, checkpoint_every=1, resume_from=ck)
    monkeypatch.setattr(np, "savez", real_savez)
    assert ma.io.load_checkpoint(ck)["state"]["epoch"] == 5  # the last complete save
    assert ck.read_bytes() != good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]
    with pytest.raises(ValueError, match="not a training checkpoint"):
        model.save(tmp_path / "plain.npz")
        ma.fit(model, X, y, epochs=2, resume_from=tmp_path / "plain.npz")


def test_resume_refuses_another_architecture(tmp_path):
    X, y = make_data(np.random.default_rng(5), 40, WIDTHS, LOSS)
    ck = tmp_path / "ck.npz"
    ma.fit(_model("numpy"), X, y, epochs=1, checkpoint=ck)
    other = ma.MLP([4, 5, 3], backend="numpy")
    with pytest.raises(ValueError, match="is for a model"):
        ma.fit(other, X, y, epochs=2, resume_from=ck)


def test_l2_penalty_matches_scikit_learns_definition(backend_name):
    X, y = make_data(np.random.default_rng(6), 30, WIDTHS, LOSS)
    model = _model(backend_name)
    Xd, yd = model.prepare(X, y)
    alpha = 0.3
    plain_loss, plain = model.loss_and_gradients(Xd, yd)
    plain = [model.backend.to_numpy(g).copy() for g in plain]
    plain_loss = float(model.backend.to_numpy(plain_loss))
    loss, grads = TrainingStep(model, SGD(0.1), alpha=alpha).gradients(Xd, yd)
    W = model.get_weights()[0::2]
    expected = plain_loss + 0.5 * alpha * sum(float((w * w).sum()) for w in W)
    assert float(model.backend.to_numpy(loss)) == pytest.approx(expected, rel=1e-12)
    for k, g in enumerate(grads):
        extra = alpha * W[k // 2] / 30 if k % 2 == 0 else 0.0
        np.testing.assert_allclose(
            model.backend.to_numpy(g), plain[k] + extra, rtol=1e-10, atol=1e-14
        )


def test_gradient_clipping(backend_name):
    X, y = make_data(np.random.default_rng(7), 30, WIDTHS, LOSS)
    model = _model(backend_name)
    Xd, yd = model.prepare(X, y)
    _, grads = TrainingStep(model, SGD(0.1), clip_norm=1e-3).gradients(Xd, yd)
    norm = np.sqrt(sum(float((model.backend.to_numpy(g) ** 2).sum()) for g in grads))
    assert norm == pytest.approx(1e-3, rel=1e-9)
    _, unclipped = TrainingStep(model, SGD(0.1), clip_norm=1e6).gradients(Xd, yd)
    _, reference = model.loss_and_gradients(Xd, yd)
    for a, b in zip(unclipped, reference, strict=True):
        np.testing.assert_allclose(model.backend.to_numpy(a), model.backend.to_numpy(b), rtol=1e-12)


def test_schedules():
    assert schedules.Constant()(10, 3.0) == 1.0
    step = schedules.StepDecay(2, gamma=0.5)
    assert [step(0, e) for e in (0, 1.9, 2, 4.5)] == [1.0, 1.0, 0.5, 0.25]
    cos = schedules.Cosine(10, min_factor=0.1)
    assert cos(0, 0.0) == pytest.approx(1.0) and cos(0, 10.0) == pytest.approx(0.1)
    assert cos(0, 5.0) == pytest.approx(0.55)
    warm = schedules.Warmup(2, after=schedules.Constant())
    assert [warm(0, e) for e in (0.0, 1.0, 2.0, 5.0)] == [0.0, 0.5, 1.0, 1.0]
    assert schedules.InvScaling(0.5)(3, 0.0) == pytest.approx(0.5)
    assert schedules.linear_scaling(0.1, 1024, 256) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="valid schedules"):
        schedules.get_schedule("exponential", 10)


def test_schedule_drives_the_learning_rate_and_is_undone():
    X, y = make_data(np.random.default_rng(8), 40, WIDTHS, LOSS)
    opt = ma.optim.SGD(0.1)
    h = ma.fit(
        _model("numpy"),
        X,
        y,
        epochs=4,
        batch_size=10,
        optimizer=opt,
        schedule=schedules.get_schedule("step", 4, warmup=1),
    )
    assert h["lr"][0] == pytest.approx(0.1 * 0.75)  # last step of the warmup epoch: 3/4
    assert h["lr"][-1] == pytest.approx(0.1 * 0.01)  # x0.1 per epoch after warmup, 2 steps down
    assert opt.lr == 0.1


def test_early_stopping_restores_the_best_weights(backend_name):
    rng = np.random.default_rng(9)
    X, y = make_data(rng, 60, WIDTHS, LOSS)
    Xv, yv = make_data(rng, 60, WIDTHS, LOSS)  # unrelated labels: validation loss rises soon
    model = _model(backend_name)
    stopper = ma.callbacks.EarlyStopping(patience=3)
    snapshots = {}
    h = ma.fit(
        model,
        X,
        y,
        epochs=200,
        optimizer=ma.optim.Adam(0.05),
        validation_data=(Xv, yv),
        callbacks=[stopper, lambda e, logs: snapshots.__setitem__(e, model.get_weights())],
    )
    assert h.n_epochs < 200 and stopper.stopped_epoch == h.n_epochs
    best = int(np.argmin(h["val_loss"])) + 1
    assert stopper.best_epoch == best
    for a, b in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="validation_data"):
        ma.fit(model, X, y, epochs=2, callbacks=[ma.callbacks.EarlyStopping()])


def test_cli_large_batch_options(tmp_path):
    from mlp_accel.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 6))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    np.save(tmp_path / "big.npy", np.column_stack([X, y]))
    ck = tmp_path / "ck.npz"
    args = [
        "train",
        "--data",
        str(tmp_path / "big.npy"),
        "--backend",
        "numpy",
        "--no-progress",
        "--layers",
        "6,16,1",
        "--batch-size",
        "1024",
        "--accumulate",
        "4",
        "--lr",
        "0.01",
        "--checkpoint",
        str(ck),
        "--checkpoint-every",
        "1",
        "--schedule",
        "cosine",
        "--warmup",
        "1",
        "--clip-norm",
        "10",
        "--alpha",
        "1e-4",
    ]
    assert main([*args, "--epochs", "3"]) == 0
    assert ma.io.load_checkpoint(ck)["state"]["epoch"] == 3
    # The run's batch size, accumulation and schedule come from the checkpoint.
    resume = [*args[:8], "--lr", "0.01", "--checkpoint", str(ck), "--resume", str(ck)]
    assert main([*resume, "--epochs", "6"]) == 0
    state = ma.io.load_checkpoint(ck)["state"]
    assert state["epoch"] == 6
    assert (state["run"].batch_size, state["run"].accumulate) == (1024, 4)
    assert state["run"].schedule["params"]["after"]["params"]["epochs"] == 2.0
    assert (
        main(
            [
                "train",
                "--dataset",
                "breast_cancer",
                "--backend",
                "numpy",
                "--no-progress",
                "--early-stopping",
                "5",
                "--epochs",
                "500",
                "--lr",
                "0.01",
            ]
        )
        == 0
    )


def test_weighted_gradients_are_micro_batched_to_the_backends_row_limit(monkeypatch):
    # The weighted path follows max_batch_rows too, not only the unweighted one.
    X, y = make_data(np.random.default_rng(8), 23, WIDTHS, LOSS)
    w = np.random.default_rng(9).uniform(0.0, 2.0, 23)
    model = _model("numpy")
    Xd, yd = model.prepare(X, y)
    wd = model.backend.asarray(w, model.dtype)
    whole_loss, whole = model.loss_and_gradients(Xd, yd, sample_weight=wd)
    whole = [g.copy() for g in whole]
    seen = []
    forward = model.backend.dense_forward

    def spy(a, *args, **kwargs):
        seen.append(a.shape[0])
        return forward(a, *args, **kwargs)

    # A GPU backend's rule (the CPU backends run fixed chunks instead), on NumPy's hooks.
    monkeypatch.setattr(model.backend, "chunked", False)
    monkeypatch.setattr(model.backend, "max_batch_rows", lambda spec: 5)
    monkeypatch.setattr(model.backend, "dense_forward", spy)
    loss, grads = model.loss_and_gradients(Xd, yd, sample_weight=wd)
    assert seen and max(seen) <= 5
    assert float(loss) == pytest.approx(float(whole_loss), rel=1e-12)
    for a, b in zip(grads, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_train_step_is_the_training_step_object(backend_name):
    X, y = make_data(np.random.default_rng(10), 30, WIDTHS, LOSS)
    a, b = _model(backend_name), _model(backend_name)
    Xa, ya = a.prepare(X, y)
    Xb, yb = b.prepare(X, y)
    options = {"accumulate": 3, "alpha": 0.1, "clip_norm": 0.5}
    loss_a = a.train_step(Xa, ya, SGD(0.1, momentum=0.9), **options)
    loss_b = TrainingStep(b, SGD(0.1, momentum=0.9), **options)(Xb, yb)
    assert float(a.backend.to_numpy(loss_a)) == float(b.backend.to_numpy(loss_b))
    _assert_same_weights(a, b, rtol=0)


def test_to_builds_a_model_with_the_same_weights_and_generator(backend_name):
    model = _model("numpy", seed=4)
    model.rng.random(3)
    moved = model.to(backend_name)
    assert moved.backend.name == backend_name and moved.backend_choice is None
    _assert_same_weights(model, moved, rtol=0)
    assert moved.rng.random() == model.rng.random()
    moved.set_weights([np.zeros_like(w) for w in moved.get_weights()])
    assert np.any(model.get_weights()[0] != 0)  # a copy, not shared arrays


def test_constructor_takes_weights_and_validates_them():
    weights = _model("numpy", seed=1).get_weights()
    built = ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", dtype="float64", weights=weights)
    for a, b in zip(built.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        ma.MLP(WIDTHS, ACTS, LOSS, backend="numpy", weights=weights[:-1])
