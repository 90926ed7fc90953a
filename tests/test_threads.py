"""Thread pools: usable CPUs (affinity, cgroup quota), pinning, and the serial/parallel
choice measured from step times."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import mlp_accel as ma
from mlp_accel.backends import _step_tuner, _threads
from mlp_accel.backends._step_tuner import SerialParallelChooser, StepTuner
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


PROC_STAT = (
    "cpu  500 0 100 900 20 0 0 0 0 0\n"
    "cpu0 200 0 50 300 10 0 0 0 0 0\n"
    "cpu1 300 0 50 600 10 0 0 0 0 0\n"
    "intr 1 2 3\n"
)


def test_idle_cpu_seconds_sums_idle_and_iowait_of_the_given_cpus(tmp_path):
    import os

    root = _write(tmp_path, {"proc/stat": PROC_STAT})
    hz = os.sysconf("SC_CLK_TCK")
    assert _threads.idle_cpu_seconds(root, cpus={0, 1}) == pytest.approx(920 / hz)
    assert _threads.idle_cpu_seconds(root, cpus={1}) == pytest.approx(610 / hz)
    assert _threads.idle_cpu_seconds(tmp_path / "nowhere") is None


# -- the serial/parallel choice, with made-up step times ---------------------------------------


def _drive(chooser: SerialParallelChooser, serial: float, parallel: float, steps: int) -> list:
    modes = []
    for _ in range(steps):
        mode = chooser.parallel()
        modes.append(mode)
        chooser.record(parallel if mode else serial)
    return modes


def test_chooser_probes_both_modes_then_keeps_the_faster():
    chooser = SerialParallelChooser(probe_steps=3, warmup=1)
    modes = _drive(chooser, serial=2.0, parallel=1.0, steps=8)
    assert modes == [False] * 4 + [True] * 4  # serial, then parallel, warm-up step first
    assert chooser.choice is True and not chooser.probing
    assert _drive(chooser, 2.0, 1.0, 20) == [True] * 20
    assert "parallel" in chooser.reason


def test_chooser_warmup_steps_are_not_counted():
    chooser = SerialParallelChooser(probe_steps=2, warmup=1)
    times = iter([100.0, 1.0, 1.0, 100.0, 2.0, 2.0])  # first step each way: compilation
    while chooser.probing:
        chooser.record(next(times))
    assert chooser.choice is False  # serial 1.0 against parallel 2.0


def test_chooser_ends_the_probe_early_on_a_clear_loser():
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, decisive=3.0)
    modes = _drive(chooser, serial=1.0, parallel=4.0, steps=6)
    assert modes == [False] * 4 + [True] * 2  # warm-up + 3 serial, warm-up + 1 parallel
    assert not chooser.probing and chooser.choice is False


def test_chooser_tie_goes_to_serial():
    chooser = SerialParallelChooser(min_gain=1.15)
    _drive(chooser, serial=1.0, parallel=0.9, steps=8)  # only 1.11x faster
    assert chooser.choice is False


def test_chooser_probes_again_when_steps_degrade_and_switches_to_serial():
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, window=5, degrade=2.0, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=1.0, steps=8)
    assert chooser.choice is True
    # A neighbour arrives: parallel steps collapse (a straggler thread), serial ones do not.
    _drive(chooser, serial=2.2, parallel=24.0, steps=4)
    assert not chooser.probing  # 4 slow steps: not yet a full window
    _drive(chooser, serial=2.2, parallel=24.0, steps=1)
    assert chooser.probing and chooser.probes == 2
    _drive(chooser, serial=2.2, parallel=24.0, steps=8)
    assert chooser.choice is False
    assert _drive(chooser, 2.2, 24.0, 10) == [False] * 10


def test_chooser_probes_again_when_the_choice_stops_paying_before_steps_double():
    # Parallel at 1.0 against 2.0 serial; a neighbour slows parallel steps to 1.8: less than
    # the 2x "degrade" rule, but now slower than what parallel needed to be chosen (2/1.15).
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, window=5, degrade=2.0, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=1.0, steps=8)
    assert chooser.choice is True
    _drive(chooser, serial=2.0, parallel=1.6, steps=10)  # still pays: no probe
    assert not chooser.probing and chooser.probes == 1
    _drive(chooser, serial=2.0, parallel=1.8, steps=5)
    assert chooser.probing and chooser.probes == 2
    _drive(chooser, serial=1.5, parallel=1.8, steps=8)
    assert chooser.choice is False
    # Serial steps of 1.6 stay under 1.8 * 1.15, where parallel as measured would win.
    _drive(chooser, serial=1.6, parallel=1.8, steps=20)
    assert not chooser.probing and chooser.probes == 2


def test_chooser_compares_short_steps_over_a_longer_window():
    # 70-microsecond steps: a burst of jitter (5 slow steps in a row) must not start a probe;
    # a lasting slowdown must, within the longest window.
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, recheck=10**6, max_window=64)
    _drive(chooser, serial=70e-6, parallel=80e-6, steps=8)
    assert chooser.choice is False
    for t in [70e-6] * 40 + [200e-6] * 5 + [70e-6] * 40:
        chooser.record(t)
    assert not chooser.probing and chooser.probes == 1
    slow = 0
    while not chooser.probing and slow < 64:
        chooser.record(200e-6)
        slow += 1
    assert chooser.probing and chooser.probes == 2 and slow > 5


def test_chooser_ignores_a_single_slow_step():
    chooser = SerialParallelChooser(window=5, degrade=2.0, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=1.0, steps=8)
    times = [1.0, 1.0, 50.0, 1.0, 1.0, 1.0, 1.0]  # one hiccup: the median stays put
    for t in times:
        chooser.record(t)
    assert not chooser.probing and chooser.probes == 1


def test_chooser_rechecks_periodically_and_backs_off_when_confirmed():
    chooser = SerialParallelChooser(probe_steps=1, warmup=0, recheck=10)
    _drive(chooser, serial=1.0, parallel=2.0, steps=2)
    assert chooser.choice is False
    _drive(chooser, 1.0, 2.0, 10)
    assert chooser.probing and chooser.probes == 2  # a quiet machine could favour parallel
    _drive(chooser, 1.0, 2.0, 2)  # same answer: the next recheck waits twice as long
    _drive(chooser, 1.0, 2.0, 19)
    assert not chooser.probing
    _drive(chooser, 1.0, 2.0, 1)
    assert chooser.probing and chooser.probes == 3
    # The machine became quiet and parallel pays now: the recheck finds it.
    _drive(chooser, serial=1.0, parallel=0.5, steps=2)
    assert chooser.choice is True


def test_chooser_probes_parallel_again_when_a_neighbour_leaves():
    # Serial chosen beside a busy neighbour; serial steps do not speed up when it leaves,
    # so only the idle CPUs tell: one more idle CPU probes parallel at once.
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=5.0, steps=8)
    assert chooser.choice is False and not chooser.probing
    _drive(chooser, 2.0, 5.0, 3)
    chooser.observe_spare(0.05)  # the machine as serial was chosen
    chooser.observe_spare(0.3)  # noise
    assert not chooser.probing
    chooser.observe_spare(1.0)
    assert chooser.probing and chooser.probes == 2
    assert "idle" in chooser.reason
    # Parallel only: the recent serial steps are the reference.
    assert _drive(chooser, serial=2.0, parallel=1.0, steps=4) == [True] * 4
    assert chooser.choice is True and not chooser.probing


def test_chooser_compares_with_the_machine_its_probe_saw():
    # The neighbour leaves right as the probe decides: the first idle CPUs seen after the
    # decision are not the machine serial was chosen on; the probe's serial steps are.
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=5.0, steps=4)
    chooser.observe_spare(0.0)  # during the probe's serial steps: busy
    _drive(chooser, serial=2.0, parallel=5.0, steps=5)
    assert chooser.choice is False and not chooser.probing
    chooser.observe_spare(1.0)
    assert chooser.probing


def test_chooser_keeps_serial_on_a_quiet_machine_where_parallel_does_not_pay():
    chooser = SerialParallelChooser(probe_steps=3, warmup=1, recheck=10**6)
    _drive(chooser, serial=2.0, parallel=2.1, steps=8)
    for _ in range(5):  # quiet when decided and since: no neighbour to wait for
        _drive(chooser, serial=2.0, parallel=2.1, steps=3)
        chooser.observe_spare(1.0)
    assert not chooser.probing and chooser.probes == 1


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_step_tuner_applies_modes_per_batch_bucket_and_times_the_step():
    clock = _FakeClock()
    applied: list[bool] = []
    restored: list[bool] = []
    state = {"parallel": None}

    def apply(parallel: bool) -> None:
        applied.append(parallel)
        state["parallel"] = parallel

    tuner = StepTuner(
        apply,
        lambda: restored.append(True),
        tune_rows=lambda rows: rows >= 100,
        chooser=lambda: SerialParallelChooser(probe_steps=1, warmup=0),
        clock=clock,
    )

    def step(X):
        clock.now += 1.0 if state["parallel"] else 3.0
        return X.shape[0]

    tuned = tuner.wrap(step)
    for _ in range(6):
        assert tuned(np.zeros((1000, 1))) == 1000
    assert tuner.choosers[(1000).bit_length()].choice is True
    assert applied == [False, True]  # applied only on a change
    sys.modules["_mlp_accel_test_new_module"] = types.ModuleType("new")  # may bring a pool
    try:
        tuned(np.zeros((1000, 1)))
    finally:
        del sys.modules["_mlp_accel_test_new_module"]
    assert applied == [False, True, True]  # applied again: a new pool gets the mode too
    tuned(np.zeros((10, 1)))  # too small to tune: serial, no chooser
    assert applied[-1] is False and len(tuner.choosers) == 1
    tuned(np.zeros((300, 1)))  # another size bucket: its own probe
    assert len(tuner.choosers) == 2
    tuner.close()
    assert restored == [True]


def test_step_tuner_reads_idle_cpus_around_serial_steps():
    clock = _FakeClock()
    idle = {"seconds": 0.0, "reads": 0}
    state = {"parallel": None, "neighbour": True}

    def read_idle() -> float:
        idle["reads"] += 1
        return idle["seconds"]

    def apply(parallel: bool) -> None:
        state["parallel"] = parallel

    tuner = StepTuner(
        apply,
        lambda: None,
        chooser=lambda: SerialParallelChooser(probe_steps=1, warmup=0, recheck=10**6),
        clock=clock,
        idle=read_idle,
        spare_every=0.5,
    )

    def step(X):
        if state["parallel"]:
            seconds = 3.0 if state["neighbour"] else 0.5
        else:
            seconds = 1.0
        clock.now += seconds
        # A busy neighbour leaves no CPU idle; without it, one stands idle beside us.
        idle["seconds"] += 0.0 if state["neighbour"] else seconds
        return None

    tuned = tuner.wrap(step)
    X = np.zeros((1000, 1))
    for _ in range(5):
        tuned(X)
    chooser = tuner.choosers[(1000).bit_length()]
    assert chooser.choice is False and idle["reads"] > 0
    state["neighbour"] = False
    for _ in range(4):
        tuned(X)
    assert chooser.choice is True and chooser.probes == 2


# -- pinning, and the pools during training --------------------------------------------------


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_set_threads_rejects_bad_counts():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            ma.set_threads(bad)


def test_threads_context_pins_blas_and_restores():
    with ma.threads(1):
        assert _blas_threads() == {1}
        assert _threads.pinned_threads() == 1
        assert _step_tuner.tuner_for(ma.MLP([2, 3, 1], backend="numpy")) is None
    assert _threads.pinned_threads() is None
    assert _blas_threads() == {_threads.pool_size()}


@pytest.mark.skipif(usable_cpus() < 2, reason="one usable CPU: nothing to choose")
def test_a_second_fit_of_the_same_shape_starts_decided(rng):
    X = rng.standard_normal((300, 4))
    y = (X[:, 0] > 0).astype(float)
    model = ma.MLP([4, 8, 1], backend="numpy", seed=0)
    ma.fit(model, X, y, epochs=12)
    tuner = _step_tuner.tuner_for(ma.MLP([4, 8, 1], backend="numpy", seed=1))
    try:
        chooser = tuner.choosers[(300).bit_length()]
        assert chooser.choice is not None and not chooser.probing
    finally:
        tuner.close()


def test_an_outside_blas_limit_is_kept_during_fit(rng):
    from threadpoolctl import threadpool_limits

    X = rng.standard_normal((300, 4))
    y = (X[:, 0] > 0).astype(float)
    seen: list[set[int]] = []
    with threadpool_limits(limits=1, user_api="blas"):
        model = ma.MLP([4, 8, 1], backend="numpy", seed=0)
        ma.fit(model, X, y, epochs=12, callbacks=[lambda e, logs: seen.append(_blas_threads())])
        assert _step_tuner.tuner_for(model) is None
    assert seen and all(s == {1} for s in seen)


def test_fit_gives_back_the_blas_threads(rng):
    X = rng.standard_normal((300, 4))
    y = (X[:, 0] > 0).astype(float)
    before = _blas_threads()
    model = ma.MLP([4, 8, 1], backend="numpy", seed=0)
    ma.fit(model, X, y, epochs=3)
    assert _blas_threads() == before


@pytest.mark.skipif(usable_cpus() < 2, reason="one usable CPU: nothing to choose")
def test_fused_numba_kernel_runs_with_blas_at_one_thread_and_same_numbers(monkeypatch, rng):
    """Parallel or serial, the fused kernel gives the same bits; BLAS sleeps beside it."""
    pytest.importorskip("numba")
    X = rng.standard_normal((4096, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    seen: list[set[int]] = []
    weights = []
    for mode in (True, False):
        monkeypatch.setattr(SerialParallelChooser, "parallel", lambda self, m=mode: m)
        model = ma.MLP([2, 4, 3, 1], backend="numba", dtype="float64", seed=0)
        ma.fit(
            model,
            X,
            y,
            epochs=3,
            optimizer=ma.optim.Adam(0.01),
            callbacks=[lambda epoch, logs: seen.append(_blas_threads())],
        )
        weights.append(model.get_weights())
    assert all(s == {1} for s in seen), seen
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


@pytest.mark.skipif(usable_cpus() < 2, reason="one usable CPU: nothing to choose")
def test_batches_too_small_for_the_parallel_kernel_are_not_probed():
    # The staged network runs serial kernels below the backend's parallel_min_rows: probing
    # a "parallel" mode there would time the same kernel with a pool spinning beside it.
    pytest.importorskip("numba")
    model = ma.MLP([2, 4, 3, 1], backend="numba", dtype="float32", seed=0)
    tuner = _step_tuner.tuner_for(model)
    try:
        assert tuner is not None
        min_rows = model.backend.parallel_min_rows
        assert not tuner._tune_rows(min_rows - 1) and tuner._tune_rows(min_rows)
    finally:
        tuner.close()
