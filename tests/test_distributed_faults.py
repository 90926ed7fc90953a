"""Dask faults and inputs that used to surface as Dask's or NumPy's internals (issue 20):
the scheduler lost mid-fit, chunks of unknown size, a memory-mapped ``X`` with a client."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_accel as ma

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
SchedulerLostError = pytest.importorskip("mlp_accel.distributed").SchedulerLostError

# Short enough that a lost scheduler is given up on in about a second, not Dask's 30 s.
FAST_TIMEOUTS = {
    "distributed.comm.timeouts.connect": "1s",
    "distributed.comm.timeouts.tcp": "2s",
    "distributed.client.reconnect-timeout": "1s",
}


def _data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(3).normal(size=(200, 4))
    return X, (X[:, 0] > 0).astype(int)


def _model() -> ma.MLP:
    return ma.MLP([4, 8, 2], backend="numpy", dtype="float64", seed=5)


def test_lost_scheduler_is_one_error_naming_the_last_checkpoint(tmp_path):
    # Before: OSError (a connect timeout) or KeyError: 'workers' from Dask's internals.
    X, y = _data()
    ck = tmp_path / "ck.npz"
    with dask.config.set(FAST_TIMEOUTS):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        )
        client = distributed.Client(cluster)
        try:

            def lose_scheduler(epoch, logs):
                if epoch == 2:
                    cluster.sync(cluster.scheduler.close)

            model = _model()
            with pytest.raises(SchedulerLostError) as info:
                ma.fit(
                    model, X, y, epochs=4, batch_size=50, client=client,
                    callbacks=[lose_scheduler], checkpoint=ck,
                )  # fmt: skip
        finally:
            client.close(timeout=2)
            cluster.close(timeout=2)
    message = str(info.value)
    assert message.startswith("lost the Dask scheduler")
    assert f"The last checkpoint, {ck}, holds epoch 2" in message
    assert ma.io.load_checkpoint(ck)["state"]["epoch"] == 2
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_unknown_chunk_sizes_say_to_compute_them(client):
    # Before: "cannot convert float NaN to integer" for X, "y has nan" rows for y.
    X, y = _data()
    keep = da.from_array(X[:, 0] > -10, chunks=50)  # every row, but dask cannot know that
    unknown_X = da.from_array(X, chunks=(50, -1))[keep]
    unknown_y = da.from_array(y, chunks=50)[keep]
    for name, args in [
        ("X", (unknown_X, y)),
        ("y", (da.from_array(X, chunks=(50, -1)), unknown_y)),
    ]:
        with pytest.raises(ValueError, match=rf"{name} is a dask array with unknown chunk sizes"):
            ma.fit(_model(), *args, epochs=1, client=client)
    unknown_X.compute_chunk_sizes()  # what the message says to do
    unknown_y.compute_chunk_sizes()
    ma.fit(_model(), unknown_X, unknown_y, epochs=1, client=client)


def test_memory_mapped_x_with_a_client_is_refused(client, tmp_path):
    # Before: read whole on the driver, although the docs call it unsupported.
    X, y = _data()
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"X is a memory-mapped array.*read whole on the driver"):
        ma.fit(_model(), mapped, y, epochs=1, client=client)
