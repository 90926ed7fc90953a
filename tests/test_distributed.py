"""Data-parallel training on Dask: equal to single-process training, local SGD, a lost worker,
resuming on a fresh cluster, the CLI, and that ``import mlp_accel`` does not import dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.cli import main

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

LAYERS = [6, 16, 8, 3]


@pytest.fixture(scope="module")
def client():
    """One in-process 2-worker cluster shared by the module (starts in a fraction of a second)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(403, LAYERS[0]))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _model(seed: int = 5) -> ma.MLP:
    return ma.MLP(LAYERS, backend="numpy", dtype="float64", seed=seed)


def _max_diff(a: ma.MLP, b: ma.MLP) -> float:
    return max(float(np.abs(p - q).max()) for p, q in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize(
    "shuffle, options, as_dask",
    [
        (False, {}, False),
        (True, {}, True),
        (True, {"alpha": 1e-2, "clip_norm": 0.5, "accumulate": 2}, True),
    ],
)
def test_equals_single_process(client, data, shuffle, options, as_dask):
    X, y = data
    kw = dict(epochs=3, batch_size=64, shuffle=shuffle, optimizer=None, **options)
    single, dist = _model(), _model()
    h1 = ma.fit(single, X, y, **kw)
    if as_dask:  # uneven row chunks, more chunks than workers
        X, y = da.from_array(X, chunks=(90, -1)), da.from_array(y, chunks=50)
    h2 = ma.fit(dist, X, y, client=client, **kw)
    assert _max_diff(single, dist) < 1e-10
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-10)
    assert dist.rng.bit_generator.state == single.rng.bit_generator.state
    assert all(b > 0 for b in h2["bytes_sent"]) and h2["steps"] == [7.0, 7.0, 7.0]
    assert all(t >= 0 for t in h2["compute_time"] + h2["comm_time"])


def test_a_model_with_its_own_activation_trains_on_the_workers(client, data):
    # The workers rebuild the model from what travels with it: the formula, not a name
    # registered in the driver.
    X, y = data
    table = {"act_dask": {"expr": "z * tanh(z) + 0.1 * z", "derivative": None}}
    single, dist = (
        ma.MLP(
            LAYERS,
            ["act_dask", "act_dask", "softmax"],
            backend="numpy",
            dtype="float64",
            seed=5,
            custom_activations=table,
        )
        for _ in range(2)
    )
    ma.fit(single, X, y, epochs=2, batch_size=64, shuffle=False)
    ma.fit(dist, X, y, epochs=2, batch_size=64, shuffle=False, client=client)
    assert _max_diff(single, dist) < 1e-10


def test_local_sgd_trains_but_is_not_single_process(client, data):
    X, y = data
    single, local = _model(), _model()
    ma.fit(single, X, y, epochs=4, batch_size=32, shuffle=False)
    h = ma.fit(local, X, y, epochs=4, batch_size=32, shuffle=False, client=client, local_steps=3)
    assert h["loss"][-1] < h["loss"][0]
    assert h["steps"][0] == 5.0  # 13 batches in rounds of 3
    assert _max_diff(single, local) > 1e-6  # documented: not the single-machine result


def test_bad_arguments(client, data):
    X, y = data
    with pytest.raises(ValueError, match="local_steps needs a Dask client"):
        ma.fit(_model(), X, y, epochs=1, local_steps=2)
    with pytest.raises(ValueError, match="sample_weight"):
        ma.fit(_model(), X, y, epochs=1, client=client, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match="different numbers of samples"):
        ma.fit(_model(), X, y[:-1], epochs=1, client=client)


def test_import_does_not_import_dask():
    code = "import sys, mlp_accel; sys.exit('dask' in sys.modules or 'distributed' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_lost_worker_then_resume_on_fresh_cluster(client, data, tmp_path):
    """Kill a worker process after epoch 1: the fit either recomputes the step (same result)
    or fails naming the worker, never averaging over a missing shard; then a fresh cluster
    resumes from the checkpoint and matches single-process training."""
    X, y = data
    kw = dict(epochs=4, batch_size=64, shuffle=True)
    reference = _model()
    ma.fit(reference, X, y, **kw)
    ck = tmp_path / "ck.npz"
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with distributed.Client(cluster) as c:
        pids = c.run(os.getpid)
        victim = sorted(pids)[0]

        def kill(epoch, logs):
            if epoch == 1:
                os.kill(pids[victim], signal.SIGKILL)
                deadline = time.monotonic() + 30
                while victim in c.scheduler_info()["workers"] and time.monotonic() < deadline:
                    time.sleep(0.05)
            return epoch == 2  # stop after two epochs; the rest runs on a fresh cluster

        model = _model()
        try:
            ma.fit(model, X, y, client=c, callbacks=[kill], checkpoint=ck, **kw)
        except RuntimeError as exc:
            assert victim in str(exc)
    cluster.close()
    resumed = _model(seed=99)
    h = ma.fit(resumed, X, y, client=client, resume_from=ck, **kw)
    assert h["epoch"] == [1, 2, 3, 4]
    assert _max_diff(reference, resumed) < 1e-10


def test_cli_scheduler_and_local_workers(client, capsys):
    address = client.scheduler.address
    common = ["train", "--no-progress", "--backend", "numpy", "--epochs", "3", "--batch-size"]
    assert main([*common, "64", "--scheduler", address]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"dask {address}: per step compute")
    assert "communication" in out[-1] and "MiB sent" in out[-1]
    assert main([*common, "64", "--dask-workers", "1", "--local-steps", "2"]) == 0
    assert "dask 1 local workers" in capsys.readouterr().out
    assert main([*common, "64", "--local-steps", "2"]) != 0
    assert "--local-steps needs" in capsys.readouterr().err
