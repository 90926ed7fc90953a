"""Timing and the whole run behind ``mlp-accel bench``: the table rows, the sweep, crossovers."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import BACKENDS, Backend, BackendUnavailableError, get_backend
from .cases import (
    DTYPES,
    LEARNING_RATE,
    QUICK_SHAPES,
    SHAPES,
    SWEEP_FAMILIES,
    Shape,
    fit_call,
    fit_epochs,
    host_data,
    infer_call,
    make_workload,
    sweep_batches,
    train_call,
)
from .contention import busy_process
from .firstrun import first_run
from .machine import (
    device_memory,
    is_gpu,
    load_average,
    measure_gemm,
    peak_rss_bytes,
    reset_peak_rss,
    shape_runs_on,
    step_allocation,
    system_info,
    thread_limits,
)
from .peers import LeanNumpyMLP, Peer, PeerUnavailable, sklearn_peer, torch_peer

SCHEMA = "mlp_accel.bench/2"


# -- timing ------------------------------------------------------------------------------------
#: How the bench states a row's noise: the range of its per-round times.
SPREAD = "min-max over rounds"


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one callable over the rounds of :func:`time_interleaved_stats`.

    ``median`` is what the table reports; ``low`` and ``high`` are the fastest and slowest
    round (:data:`SPREAD`: min-max, since with the 3 to 10 rounds a bench can afford an
    interquartile range is barely defined); ``rounds`` is how many rounds were timed.
    """

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        """The timing of a list of per-round seconds."""
        if not samples:
            raise ValueError("no timing samples")
        return cls(
            float(np.median(samples)), float(min(samples)), float(max(samples)), len(samples)
        )

    def rate(self, samples: float) -> tuple[float, float, float]:
        """``samples`` per second: (median, slowest round, fastest round)."""
        return samples / self.median, samples / self.high, samples / self.low


def time_interleaved_stats(
    calls: dict[Any, Callable[[], Any]],
    *,
    min_rounds: int = 3,
    min_time: float = 0.5,
    max_rounds: int = 1000,
    block_time: float = 0.02,
    syncs: dict[Any, Callable[[], Any]] | None = None,
) -> dict[Any, Timing]:
    """Seconds per call of each callable, timed in interleaved blocks: median and spread.

    On a shared, noisy machine, measuring the implementations being compared side by side in
    the same rounds exposes them to the same interference, and the median discards the
    rounds a neighbour spoiled; the min-max range of the rounds says how much they spoiled.
    Each round runs one block per callable: a call faster than ``block_time`` is repeated
    within its block (timer overhead stays negligible) and the block's mean is the round's
    sample, and a fast block starts with one untimed call, because after a switch of library
    the previous library's idle worker threads (OpenMP, OpenBLAS) still spin for a moment
    and would otherwise be billed to the next one. The caller warms up JIT code before.

    ``syncs`` maps a key to the synchronization of a callable that does not wait for its
    device itself (``train_call(..., synchronize=False)``): it is called before the clock
    starts and before it stops, so a block is ``k`` launched calls between two
    synchronizations and the device's work is timed. Keys not in ``syncs`` are timed as is.
    """
    syncs = syncs or {}
    repeats: dict[Any, int] = {}
    for key, fn in calls.items():
        sync = syncs.get(key, _nothing)
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
        repeats[key] = max(1, min(10_000, round(block_time / max(first, 1e-7))))
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    start = time.perf_counter()
    rounds = 0
    while True:
        for key, fn in calls.items():
            k, sync = repeats[key], syncs.get(key, _nothing)
            if k > 1:
                fn()
            sync()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync()
            samples[key].append((time.perf_counter() - t0) / k)
        rounds += 1
        elapsed = time.perf_counter() - start
        if rounds >= min_rounds and (elapsed >= min_time or rounds >= max_rounds):
            break
    return {key: Timing.of(s) for key, s in samples.items()}


def _nothing() -> None:
    """The synchronization of a callable that synchronizes itself."""


def time_interleaved(
    calls: dict[Any, Callable[[], Any]],
    *,
    min_rounds: int = 3,
    min_time: float = 0.5,
    max_rounds: int = 1000,
    block_time: float = 0.02,
) -> dict[Any, float]:
    """Median seconds per call of each callable (:func:`time_interleaved_stats` without
    the spread)."""
    stats = time_interleaved_stats(
        calls,
        min_rounds=min_rounds,
        min_time=min_time,
        max_rounds=max_rounds,
        block_time=block_time,
    )
    return {key: t.median for key, t in stats.items()}


def ranges_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two ``[low, high]`` ranges overlap; a missing range is no evidence of noise."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


# -- the whole run ---------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """What :func:`run_bench` measures.

    Parameters
    ----------
    backends : list of str, optional
        Backend names; default every registered backend (those that cannot start here are
        reported as skipped, with the reason).
    shapes : list of str, optional
        Names from :data:`SHAPES`; default all of them (:data:`QUICK_SHAPES` with ``quick``).
    dtypes : sequence of str
        ``float32`` and/or ``float64``.
    quick : bool
        Fewer rounds, a shorter sweep, no mnist-4096 unless named: under two minutes on two
        cores.
    peers : bool
        Measure scikit-learn and PyTorch where installed, and the lean NumPy reference.
    sweep : bool
        Run the batch-size sweep.
    sweep_batch_sizes : list of int, optional
        Batch sizes of the sweep; default :func:`sweep_batches`.
    sweep_dtype : str, optional
        Dtype of the sweep; default the first of ``dtypes``.
    threads : int, optional
        Limit BLAS, Numba and PyTorch threads; default leaves each library's own setting.
    contended : bool
        Keep one core busy with another process for the whole run
        (:func:`~mlp_accel.bench.contention.busy_process`), as on a shared machine.
    first_run : bool, optional
        Measure the first-run column (:func:`~mlp_accel.bench.firstrun.first_run`: a fresh
        process on empty caches, to the end of its first epoch) for every backend and peer
        row. Default: on in the full run, off with ``quick`` (it costs several seconds of
        compilation per Numba row).
    seed : int
        Seeds data and initial weights.
    log : callable, optional
        Receives one line per stage (the CLI prints them to stderr).
    """

    backends: list[str] | None = None
    shapes: list[str] | None = None
    dtypes: Sequence[str] = DTYPES
    quick: bool = False
    peers: bool = True
    sweep: bool = True
    sweep_batch_sizes: list[int] | None = None
    sweep_dtype: str | None = None
    threads: int | None = None
    contended: bool = False
    first_run: bool | None = None
    seed: int = 0
    log: Callable[[str], None] | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the valid choices for any unknown name."""
        for name in self.backends or []:
            if name not in BACKENDS:
                raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
        for name in self.shapes or []:
            if name not in SHAPES:
                raise ValueError(f"unknown shape {name!r}; valid shapes: {', '.join(SHAPES)}")
        for dtype in [*self.dtypes, *([self.sweep_dtype] if self.sweep_dtype else [])]:
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
        if not self.dtypes:
            raise ValueError("no dtype to measure")
        for b in self.sweep_batch_sizes or []:
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"sweep batch sizes must be positive integers, got {b!r}")

    @property
    def measure_first_run(self) -> bool:
        """Whether the first-run column is measured (explicit choice, else not with quick)."""
        return (not self.quick) if self.first_run is None else bool(self.first_run)

    @property
    def timing(self) -> dict[str, float]:
        """Keyword arguments of :func:`time_interleaved` for the main table."""
        if self.quick:
            return {"min_rounds": 3, "min_time": 0.4}
        return {"min_rounds": 5, "min_time": 2.0}


def _impl_label(name: str, kind: str) -> str:
    return {"backend": name, "reference": f"{name} (ref)", "peer": f"{name} (peer)"}[kind]


def _start_backends(names: Sequence[str], skipped: list[dict]) -> list[Backend]:
    started = []
    for name in names:
        try:
            started.append(get_backend(name))
        except BackendUnavailableError as exc:
            skipped.append({"what": name, "reason": str(exc)})
    return started


def _warm(fn: Callable[[], Any], backend: Backend | None, complete: bool = True) -> dict[str, Any]:
    """Run ``fn`` untimed (JIT warm-up); time a call and measure its memory.

    ``step_alloc_bytes`` is the step's own allocations (:func:`step_allocation`);
    ``complete`` says whether tracemalloc sees all of them (not inside Numba code nor
    PyTorch). ``process_peak_rss_bytes`` is the whole process's peak, which earlier cases,
    imports and peers set as much as this step; it stays in the JSON for reference.
    """
    fn()
    resettable = reset_peak_rss()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    memory: dict[str, Any] = {
        "step_alloc_bytes": step_allocation(fn),
        "step_alloc_complete": complete,
        "process_peak_rss_bytes": peak_rss_bytes(),
        "process_peak_rss_reset": resettable,
    }
    device = device_memory(backend) if backend is not None else None
    if device:
        memory.update(device)
    return {"seconds": elapsed, "memory": memory}


def _measure_group(
    shape: Shape,
    dtype: str,
    backends: list[Backend],
    config: BenchConfig,
    skipped: list[dict],
) -> list[dict]:
    """Every implementation on one (shape, dtype), timed side by side; one row per impl."""
    data = host_data(shape, dtype, config.seed)
    impls: list[dict[str, Any]] = []
    fit_epochs_target = 0.02 if config.quick else 0.05
    for backend in backends:
        ok, why = shape_runs_on(shape, backend, dtype)
        if not ok:
            skipped.append(
                {"what": backend.name, "shape": shape.name, "dtype": dtype, "reason": why}
            )
            continue
        work = make_workload(backend, shape, dtype, config.seed, data)
        train = train_call(work)
        # Only the numpy backend allocates nothing tracemalloc cannot see.
        warm = _warm(train, backend, complete=backend.name == "numpy")
        epochs = fit_epochs(warm["seconds"], fit_epochs_target)
        impls.append(
            {
                "impl": backend.name,
                "kind": "backend",
                "device": str(backend.device),
                "calls": {
                    "train": train,
                    "fit": fit_call(work, epochs),
                    "infer": infer_call(work),
                },
                "samples": {
                    "train": shape.batch,
                    "fit": epochs * shape.batch,
                    "infer": shape.batch,
                },
                "fit_epochs": epochs,
                "memory": warm["memory"],
                "_keep": work,
            }
        )
    if config.peers and impls and not shape.gpu_only:
        lean = LeanNumpyMLP(shape, dtype, data, config.seed)
        impls.append(
            {
                "impl": "lean-numpy",
                "kind": "reference",
                "device": "cpu",
                "calls": {"train": lean.train_step, "infer": lean.forward},
                "samples": {"train": shape.batch, "infer": shape.batch},
                "memory": _warm(lean.train_step, None)["memory"],
            }
        )
    if config.peers and impls:
        makers: list[tuple[str, Callable[[], Peer]]] = []
        if not shape.gpu_only:
            makers.append(("sklearn", lambda: sklearn_peer(shape, dtype, data, config.seed)))
            makers.append(("torch-cpu", lambda: torch_peer(shape, dtype, data, "cpu", config.seed)))
        if any(is_gpu(b) for b in backends):
            makers.append(
                ("torch-cuda", lambda: torch_peer(shape, dtype, data, "cuda", config.seed))
            )
        for name, make in makers:
            try:
                peer = make()
            except PeerUnavailable as exc:
                skipped.append(
                    {"what": name, "shape": shape.name, "dtype": dtype, "reason": str(exc)}
                )
                continue
            impls.append(
                {
                    "impl": peer.name,
                    "kind": "peer",
                    "device": peer.device,
                    "calls": {"train": peer.train, "infer": peer.infer},
                    "samples": {"train": shape.batch, "infer": shape.batch},
                    "memory": _warm(peer.train, None, complete=peer.name == "sklearn")["memory"],
                }
            )
    if not impls:
        return []
    calls = {(i["impl"], what): fn for i in impls for what, fn in i["calls"].items()}
    timings = time_interleaved_stats(calls, **config.timing)
    rows = []
    for i in impls:
        row: dict[str, Any] = {
            "impl": i["impl"],
            "kind": i["kind"],
            "label": _impl_label(i["impl"], i["kind"]),
            "device": i["device"],
            "shape": shape.name,
            "layers": list(shape.layers),
            "batch": shape.batch,
            "dtype": dtype,
        }
        for what in ("train", "fit", "infer"):
            if what in i["calls"]:
                t = timings[(i["impl"], what)]
                rate, slowest, fastest = t.rate(i["samples"][what])
                row[f"{what}_seconds"] = t.median
                row[f"{what}_samples_per_sec"] = rate
                row[f"{what}_samples_per_sec_range"] = [slowest, fastest]
                row[f"{what}_rounds"] = t.rounds
            else:
                row[f"{what}_seconds"] = row[f"{what}_samples_per_sec"] = None
                row[f"{what}_samples_per_sec_range"] = row[f"{what}_rounds"] = None
        row["fit_epochs_per_call"] = i.get("fit_epochs")
        row["train_gflops"] = shape.train_flops() / row["train_seconds"] / 1e9
        row.update(i["memory"])
        row["min_train_bytes"] = shape.minimum_train_bytes(dtype)
        rows.append(row)
    del impls, calls
    gc.collect()
    if config.measure_first_run:
        _add_first_runs(rows, shape, config, skipped)
    return rows


def _add_first_runs(rows: list[dict], shape: Shape, config: BenchConfig, skipped: list) -> None:
    """The first-run column of each backend and peer row (the reference is no product)."""
    for row in rows:
        row["first_run"] = None
        if row["kind"] == "reference":
            continue
        if config.log:
            config.log(f"first run {row['impl']} {shape.name} {row['dtype']} (empty caches)")
        try:
            row["first_run"] = first_run(
                row["impl"],
                row["kind"],
                shape,
                row["dtype"],
                seed=config.seed,
                threads=config.threads,
            )
        except RuntimeError as exc:
            what = f"first run of {row['impl']}"
            skipped.append(
                {"what": what, "shape": shape.name, "dtype": row["dtype"], "reason": str(exc)}
            )


def _add_ratios(rows: list[dict], gemm: dict[tuple[str, str], float]) -> None:
    """Ratios to the numpy backend, the lean reference and each peer; fraction of GEMM rate."""
    by_group: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        by_group.setdefault((row["shape"], row["dtype"]), {})[row["impl"]] = row
    for (shape_name, dtype), group in by_group.items():
        shape = SHAPES[shape_name]
        numpy_row, lean_row = group.get("numpy"), group.get("lean-numpy")
        peers = {name: r for name, r in group.items() if r["kind"] == "peer"}
        for row in group.values():
            train = row["train_samples_per_sec"]
            row["ratio_to_numpy"] = (
                train / numpy_row["train_samples_per_sec"] if numpy_row else None
            )
            # A ratio whose two ranges overlap is not a measured difference.
            row["ratio_to_numpy_overlaps"] = (
                ranges_overlap(
                    row.get("train_samples_per_sec_range"),
                    numpy_row.get("train_samples_per_sec_range"),
                )
                if numpy_row and numpy_row is not row
                else None
            )
            row["fit_to_lean"] = (
                row["fit_samples_per_sec"] / lean_row["train_samples_per_sec"]
                if lean_row and row["fit_samples_per_sec"]
                else None
            )
            row["ratio_to_peer"] = (
                {name: train / p["train_samples_per_sec"] for name, p in peers.items()}
                if row["kind"] != "peer"
                else {}
            )
            row["ratio_to_peer_overlaps"] = {
                name: ranges_overlap(
                    row.get("train_samples_per_sec_range"), p.get("train_samples_per_sec_range")
                )
                for name in row["ratio_to_peer"]
                for p in [peers[name]]
            }
            rate = gemm.get((row["impl"], dtype))
            if rate is None:
                # References and peers are held to the rate of a backend on the same device.
                same_device = [
                    g
                    for (impl, dt), g in gemm.items()
                    if dt == dtype and group.get(impl, {}).get("device") == row["device"]
                ]
                rate = max(same_device) if same_device else None
            row["gemm_gflops"] = rate
            row["gemm_fraction"] = row["train_gflops"] / rate if rate and shape.gemm_bound else None


def _run_sweep(backends: list[Backend], config: BenchConfig, skipped: list[dict]) -> list[dict]:
    """Train-step throughput against batch size, per backend, for each sweep family."""
    dtype = config.sweep_dtype or config.dtypes[0]
    batches = sorted(set(config.sweep_batch_sizes or sweep_batches(config.quick)))
    records = []
    timing = {"min_rounds": 3, "min_time": 0.15 if config.quick else 0.5}
    for family, base in SWEEP_FAMILIES.items():
        shape = base.with_batch(max(batches))
        data = host_data(shape, dtype, config.seed)
        works = {}
        for backend in backends:
            ok, why = shape_runs_on(shape, backend, dtype)
            if not ok:
                skipped.append({"what": backend.name, "shape": shape.name, "reason": why})
                continue
            works[backend.name] = make_workload(backend, shape, dtype, config.seed, data)
            train_call(works[backend.name], min(batches))()  # JIT warm-up
        if config.log:
            config.log(f"sweep {family} {dtype}: batches {batches[0]}..{batches[-1]}")
        for batch in batches:
            calls = {name: train_call(w, batch) for name, w in works.items()}
            timings = time_interleaved_stats(calls, **timing)
            for name, t in timings.items():
                rate, slowest, fastest = t.rate(batch)
                records.append(
                    {
                        "family": family,
                        "layers": list(base.layers),
                        "dtype": dtype,
                        "backend": name,
                        "batch": batch,
                        "train_samples_per_sec": rate,
                        "train_samples_per_sec_range": [slowest, fastest],
                        "rounds": t.rounds,
                    }
                )
        del works
        gc.collect()
    return records


def _win_ranges(batches: list[int], wins: set[int]) -> str:
    """``64-256, 4096`` for the runs of consecutive sweep points in ``wins``."""
    runs: list[list[int]] = []
    previous_won = False
    for n in batches:
        if n in wins:
            if previous_won:
                runs[-1].append(n)
            else:
                runs.append([n])
        previous_won = n in wins
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def compare_sweep(sweep: list[dict]) -> tuple[list[str], list[str]]:
    """Claims about which backend wins at which batch sizes, and warnings for those withheld.

    At each batch, one backend beats another only when their ranges (:data:`SPREAD`) do not
    overlap; where they overlap the sweep measured no difference. For each pair of backends,
    per sweep family and dtype, when every batch is decided: "numba beats numpy from batch
    N" when one wins at every batch from N up, "... at every batch" when it always wins, and
    the batch ranges otherwise. When some batches overlap, no crossover and no "every batch"
    claim is made: the claims name only the batches each side won outright, and a warning
    names the batches where the spreads overlap. Records without a range count as exact.

    Returns
    -------
    claims, warnings : list of str
    """
    claims: list[str] = []
    warnings: list[str] = []
    for family, dtype in dict.fromkeys((r["family"], r["dtype"]) for r in sweep):
        table: dict[str, dict[int, dict]] = {}
        for r in sweep:
            if (r["family"], r["dtype"]) == (family, dtype):
                table.setdefault(r["backend"], {})[r["batch"]] = r
        where = f"({family}, {dtype})"
        names = list(table)
        if len(names) < 2:
            claims.append(f"only {', '.join(names)} ran the sweep {where}: no crossover to report")
            continue
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                batches = sorted(set(table[a]) & set(table[b]))
                ra = {n: table[a][n]["train_samples_per_sec"] for n in batches}
                rb = {n: table[b][n]["train_samples_per_sec"] for n in batches}
                tied = [
                    n
                    for n in batches
                    if ranges_overlap(
                        table[a][n].get("train_samples_per_sec_range"),
                        table[b][n].get("train_samples_per_sec_range"),
                    )
                ]
                decided = [n for n in batches if n not in tied]
                a_wins = [n for n in decided if ra[n] > rb[n]]
                b_wins = [n for n in decided if n not in a_wins]
                if tied:
                    for winner, loser, wins in ((a, b, a_wins), (b, a, b_wins)):
                        if wins:
                            ranges = _win_ranges(batches, set(wins))
                            claims.append(f"{winner} beats {loser} at batches {ranges} {where}")
                    warnings.append(
                        f"{a} vs {b} {where}: spreads ({SPREAD}) overlap at batches "
                        f"{_win_ranges(batches, set(tied))}; no claim there and no crossover "
                        "reported"
                    )
                    continue
                k = len(a_wins)
                span = f"{batches[0]} to {batches[-1]}"
                if k == len(batches):
                    claims.append(f"{a} beats {b} at every batch from {span} {where}")
                elif k == 0:
                    claims.append(f"{b} beats {a} at every batch from {span} {where}")
                elif a_wins == batches[-k:]:
                    claims.append(f"{a} beats {b} from batch {a_wins[0]} {where}")
                elif a_wins == batches[:k]:
                    claims.append(f"{b} beats {a} from batch {batches[k]} {where}")
                else:
                    ranges = _win_ranges(batches, set(a_wins))
                    claims.append(f"{a} beats {b} at batches {ranges}; {b} at the others {where}")
    return claims, warnings


def crossovers(sweep: list[dict]) -> list[str]:
    """The claims of :func:`compare_sweep` (sentences saying which backend wins where)."""
    return compare_sweep(sweep)[0]


def run_bench(config: BenchConfig | None = None) -> dict[str, Any]:
    """Run the measurements and return the report (JSON-serializable).

    Keys: ``schema``, ``header`` (machine, threads, versions, GPU, load average before and
    after, the busy process of ``contended``, the spread's definition), ``config``, ``gemm``
    (rate per backend and dtype), ``rows`` (one per implementation, shape and dtype, each
    rate with its ``*_range`` [slowest, fastest round] and ``*_rounds``), ``sweep``,
    ``crossovers`` (claims the spreads support) and ``warnings`` (claims withheld because
    the spreads overlap), ``skipped`` (what did not run, and why), ``wall_seconds``.

    Raises
    ------
    ValueError
        Unknown backend, shape or dtype names; the message lists the valid ones.
    """
    config = BenchConfig() if config is None else config
    config.validate()
    t_start = time.perf_counter()
    load_before = load_average()
    log = config.log or (lambda line: None)
    skipped: list[dict] = []
    backends = _start_backends(config.backends or list(BACKENDS), skipped)
    if not backends:
        raise BackendUnavailableError(
            "no backend could start: " + "; ".join(s["reason"] for s in skipped)
        )
    shape_names = config.shapes or list(QUICK_SHAPES if config.quick else SHAPES)
    busy = busy_process() if config.contended else contextlib.nullcontext(None)
    with busy as contention, thread_limits(config.threads):
        if contention:
            where = f"CPU {contention['cpu']}" if contention["pinned"] else "no CPU (unpinned)"
            log(f"contended: busy process {contention['pid']} pinned to {where}")
        gemm: dict[tuple[str, str], float] = {}
        gemm_records = []
        for backend in backends:
            for dtype in config.dtypes:
                record = measure_gemm(backend, dtype, quick=config.quick)
                gemm[(backend.name, dtype)] = record["gflops"]
                gemm_records.append(record)
                log(f"GEMM {backend.name} {dtype}: {record['gflops']:.1f} GFLOP/s")
        rows: list[dict] = []
        for name in shape_names:
            for dtype in config.dtypes:
                log(f"measuring {name} {dtype}")
                rows += _measure_group(SHAPES[name], dtype, backends, config, skipped)
        _add_ratios(rows, gemm)
        sweep = _run_sweep(backends, config, skipped) if config.sweep else []
        header = system_info(backends)
    header["load_average_before"] = load_before
    header["load_average_after"] = load_average()
    header["contended"] = contention
    header["spread"] = SPREAD
    claims, warnings = compare_sweep(sweep)
    return {
        "schema": SCHEMA,
        "header": header,
        "config": {
            "backends": [b.name for b in backends],
            "shapes": shape_names,
            "dtypes": list(config.dtypes),
            "quick": config.quick,
            "peers": config.peers,
            "threads": config.threads,
            "contended": config.contended,
            "first_run": config.measure_first_run,
            "seed": config.seed,
            "timing": config.timing,
            "learning_rate": LEARNING_RATE,
        },
        "gemm": gemm_records,
        "rows": rows,
        "sweep": sweep,
        "crossovers": claims,
        "warnings": warnings,
        "skipped": skipped,
        "wall_seconds": time.perf_counter() - t_start,
    }
