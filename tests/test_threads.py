"""Threads: usable CPUs (affinity, cgroup quota), the fixed chunks of a batch on the
package's worker threads, and BLAS held to one thread while they run (then restored)."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import mlp_accel as ma
from mlp_accel.backends import _chunks, _threads
from mlp_accel.backends._threads import cgroup_cpu_limit, usable_cpus


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


V2 = "0::/user.slice/job\n"
V1 = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n"

# name -> (fixture files under the root, expected CPUs of the quota)
QUOTA_CASES = {
    "v2 quota": (
        {"proc/self/cgroup": V2, "sys/fs/cgroup/user.slice/job/cpu.max": "150000 100000"},
        1.5,
    ),
    "v2 max": (
        {"proc/self/cgroup": V2, "sys/fs/cgroup/user.slice/job/cpu.max": "max 100000"},
        None,
    ),
    "v2 parent limits child": (
        {
            "proc/self/cgroup": V2,
            "sys/fs/cgroup/user.slice/job/cpu.max": "max 100000",
            "sys/fs/cgroup/user.slice/cpu.max": "100000 100000",
        },
        1.0,
    ),
    "v2 no cpu.max file": ({"proc/self/cgroup": V2}, None),
    "v1 quota": (
        {
            "proc/self/cgroup": V1,
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
        },
        3.0,
    ),
    "v1 unlimited (-1)": (
        {
            "proc/self/cgroup": V1,
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
        },
        None,
    ),
    "v1 container sees its cgroup at the mount root": (
        {
            "proc/self/cgroup": V1,
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
        2.0,
    ),
    "v1 cpu controller mounted alone": (
        {
            "proc/self/cgroup": "3:cpu:/k8s/pod\n",
            "sys/fs/cgroup/cpu/k8s/pod/cpu.cfs_quota_us": "50000",
            "sys/fs/cgroup/cpu/k8s/pod/cpu.cfs_period_us": "100000",
        },
        0.5,
    ),
    "no /proc/self/cgroup": ({}, None),
    "garbage": ({"proc/self/cgroup": V2, "sys/fs/cgroup/user.slice/job/cpu.max": "lots"}, None),
}


@pytest.mark.parametrize("case", QUOTA_CASES)
def test_cgroup_quota_parsing(case, tmp_path):
    files, expected = QUOTA_CASES[case]
    assert cgroup_cpu_limit(_write(tmp_path, files)) == expected


@pytest.mark.parametrize(
    "case, affinity, expected",
    [
        ("v2 quota", 8, 1),  # 1.5 CPUs: a second thread would be throttled
        ("v1 quota", 8, 3),
        ("v1 quota", 2, 2),  # the affinity mask is smaller than the quota
        ("v2 max", 4, 4),
        ("v1 cpu controller mounted alone", 4, 1),  # half a CPU: still one thread
        ("no /proc/self/cgroup", 3, 3),
    ],
)
def test_usable_cpus_is_the_smaller_of_affinity_and_quota(case, affinity, expected, tmp_path):
    root = _write(tmp_path, QUOTA_CASES[case][0])
    assert usable_cpus(root, affinity=affinity) == expected


def test_usable_cpus_of_this_process_respects_its_affinity():
    import os

    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_set_threads_rejects_bad_counts():
    for bad in (1.5, True, "2", np.float64(2.0)):
        with pytest.raises(TypeError, match="threads must be a positive integer"):
            ma.set_threads(bad)
    for bad in (0, -1, np.int64(0)):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            ma.set_threads(bad)


def test_set_threads_takes_numpy_integers_and_leaves_blas_alone():
    before = _blas_threads()
    with ma.threads(np.int64(1)):
        assert _threads.pinned_threads() == 1 and _threads.worker_count() == 1
        assert _blas_threads() == before
    assert _threads.pinned_threads() is None
    assert _threads.worker_count() == usable_cpus()


@pytest.mark.parametrize(
    ("rows", "widths"),
    [(1, (2, 4, 1)), (1000, (2, 4, 3, 1)), (100_000, (2, 4, 3, 1)), (4096, (784, 1024, 10))],
)
def test_chunk_plan_covers_the_batch_in_equal_chunks_whatever_the_threads(rows, widths):
    plans = []
    for count in (1, 2, 7):
        with ma.threads(count):
            plans.append(_chunks.chunk_plan(rows, widths))
    assert plans[0] == plans[1] == plans[2]
    plan = plans[0]
    assert plan[0][0] == 0 and plan[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    sizes = {hi - lo for lo, hi in plan[:-1]}
    assert len(sizes) <= 1 and all(s % _chunks.ROW_QUANTUM == 0 for s in sizes)


def test_chunk_pool_runs_every_chunk_once_and_keeps_their_order():
    pool = _chunks.ChunkPool()
    seen = []
    lock = threading.Lock()

    def work(i):
        with lock:
            seen.append((i, threading.current_thread().name))
        return i * i

    results = [None] * 50
    pool.run(work, 50, 3, results.__setitem__)
    assert results == [i * i for i in range(50)]
    assert sorted(i for i, _ in seen) == list(range(50))


def test_results_fold_in_index_order_whichever_thread_finishes_first():
    import random
    import time

    def work(i):
        time.sleep(random.random() / 1000)  # finish out of order
        return [i]

    with ma.threads(4):
        folded = _chunks.run_chunks(work, 40, blas=False, fold=lambda a, r: (a or []) + r)
    assert folded == list(range(40))


def test_chunk_pool_raises_the_first_error_after_the_running_chunks_end():
    pool = _chunks.ChunkPool()
    finished = []

    def work(i):
        if i == 3:
            raise ValueError("chunk 3 failed")
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="chunk 3 failed"):
        pool.run(work, 40, 2, lambda i, r: None)
    assert 3 not in finished and len(finished) < 40
    results = [None] * 4
    pool.run(lambda i: i, 4, 2, results.__setitem__)
    assert results == [0, 1, 2, 3]  # the pool still works


def test_blas_is_one_thread_inside_a_chunked_batch_and_restored_after(rng):
    before = _blas_threads()
    inside: list[set[int]] = []
    _chunks.run_chunks(lambda i: inside.append(_blas_threads()), 3)
    assert inside and all(s == {1} for s in inside)
    assert _blas_threads() == before


def test_two_fits_in_two_threads_keep_their_bits_and_leave_blas_as_it_was(rng):
    """BLAS's setting is process-wide: counted, so two fits at once neither undo each
    other's limit nor leave it changed, and each gives the bits it gives alone."""
    X = rng.standard_normal((3000, 16))
    y = (X[:, 0] > X[:, 1]).astype(float)
    before = _blas_threads()

    def run(seed, out):
        model = ma.MLP([16, 64, 1], backend="numpy", dtype="float64", seed=seed)
        ma.fit(model, X, y, epochs=3, batch_size=1024)
        out[seed] = model.get_weights()

    alone: dict[int, list] = {}
    run(0, alone)
    run(1, alone)
    together: dict[int, list] = {}
    threads = [threading.Thread(target=run, args=(seed, together)) for seed in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (0, 1):
        for a, b in zip(alone[seed], together[seed], strict=True):
            np.testing.assert_array_equal(a, b)
    assert _blas_threads() == before


def test_an_outside_blas_limit_is_kept_after_fit(rng):
    from threadpoolctl import threadpool_limits

    X = rng.standard_normal((300, 4))
    y = (X[:, 0] > 0).astype(float)
    with threadpool_limits(limits=1, user_api="blas"):
        model = ma.MLP([4, 8, 1], backend="numpy", seed=0)
        ma.fit(model, X, y, epochs=3)
        assert _blas_threads() == {1}


def test_fit_gives_back_the_blas_threads(rng):
    X = rng.standard_normal((300, 4))
    y = (X[:, 0] > 0).astype(float)
    before = _blas_threads()
    model = ma.MLP([4, 8, 1], backend="numpy", seed=0)
    ma.fit(model, X, y, epochs=3)
    assert _blas_threads() == before


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_thread_count_changes_no_bit(backend, rng):
    """The same fit with one worker thread and with several: identical weights (fixed chunks,
    summed in order); a batch of 3 chunks, full-batch and mini-batch."""
    if backend == "numba":
        pytest.importorskip("numba")
    X = rng.standard_normal((9000, 8))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    weights = []
    for count in (1, 3):
        with ma.threads(count):
            model = ma.MLP([8, 96, 1], backend=backend, dtype="float32", seed=0)
            ma.fit(model, X, y, epochs=2, batch_size=None, optimizer="adam")
            ma.fit(model, X, y, epochs=1, batch_size=4000, optimizer="adam")
            weights.append(model.get_weights())
    assert len(_chunks.chunk_plan(9000, (8, 96, 1))) > 1
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_threads_flag(tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            *"-m mlp_accel train --backend numpy --epochs 3 --no-progress --threads 1".split(),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "mlp_accel", "train", "--threads", "0"],
        capture_output=True,
        text=True,
    )
    # A usage error, as every other bad option value: exit 2, the usage line, then the error.
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert lines[0].startswith("usage:")
    assert "--threads" in lines[-1] and "positive" in lines[-1]


def test_blas_controllers_are_found_once_until_a_module_is_imported(monkeypatch):
    # Finding them walks every loaded library: milliseconds that every fit paid.
    first = _threads.blas_controllers()
    assert _threads.blas_controllers() is first
    monkeypatch.setitem(sys.modules, "a_module_with_its_own_blas", types.ModuleType("x"))
    again = _threads.blas_controllers()
    assert again is not first
    assert [c.filepath for c in again] == [c.filepath for c in first]
