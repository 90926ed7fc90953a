"""The main table's rows: every implementation of one (shape, dtype) timed side by side.

:func:`measure_group` builds the implementations of a group (the library on each backend, the
lean NumPy reference, the peers), times them in the same interleaved rounds and turns each
into a row; :func:`add_first_runs` adds the first-run column and :func:`add_ratios` the
columns that compare rows of a group with each other and with the machine's GEMM rate.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from ..backends import Backend
from .cases import (
    HostData,
    Shape,
    fit_call,
    fit_epochs,
    host_data,
    infer_call,
    make_workload,
    train_call,
)
from .config import BenchConfig
from .firstrun import first_run
from .jax_peer import jax_peer
from .machine import (
    device_memory,
    is_gpu,
    peak_rss_bytes,
    reset_peak_rss,
    shape_runs_on,
    step_allocation,
)
from .peers import LeanNumpyMLP, Peer, PeerUnavailable, sklearn_peer, torch_peer
from .timing import Timing, ranges_overlap, time_interleaved_stats

__all__ = ["measure_group", "add_first_runs", "add_ratios"]

#: The measured steps, in the order of a row's columns.
_STEPS = ("train", "fit", "infer")


def measure_group(
    shape: Shape,
    dtype: str,
    backends: list[Backend],
    config: BenchConfig,
    skipped: list[dict],
) -> list[dict]:
    """Every implementation on one (shape, dtype), timed side by side; one row per impl.

    What cannot run here (a backend without the memory, a peer not installed) is appended to
    ``skipped`` with the reason. The reference and the peers are measured only beside at
    least one backend of the library, which they are there to be compared with.
    """
    data = host_data(shape, dtype, config.seed)
    impls = _backend_impls(shape, dtype, data, backends, config, skipped)
    if config.peers and impls and not shape.gpu_only:
        impls.append(_reference_impl(shape, dtype, data, config.seed))
    if config.peers and impls:
        impls += _peer_impls(shape, dtype, data, backends, config.seed, skipped)
    if not impls:
        return []
    calls = {(i["impl"], what): fn for i in impls for what, fn in i["calls"].items()}
    timings = time_interleaved_stats(calls, **config.timing)
    rows = [_timed_row(i, shape, dtype, timings) for i in impls]
    # The workloads hold the group's device arrays: free them before the next group is built
    # and before the first runs, whose fresh processes need the memory.
    del impls, calls
    gc.collect()
    if config.measure_first_run:
        add_first_runs(rows, shape, config, skipped)
    return rows


def _impl_label(name: str, kind: str) -> str:
    return {"backend": name, "reference": f"{name} (ref)", "peer": f"{name} (peer)"}[kind]


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


def _backend_impls(
    shape: Shape,
    dtype: str,
    data: HostData,
    backends: list[Backend],
    config: BenchConfig,
    skipped: list[dict],
) -> list[dict[str, Any]]:
    """The library on each backend that can hold the case: train, fit and infer, warmed up."""
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
    return impls


def _reference_impl(shape: Shape, dtype: str, data: HostData, seed: int) -> dict[str, Any]:
    """The lean hand-written NumPy step (:class:`LeanNumpyMLP`): train and infer."""
    lean = LeanNumpyMLP(shape, dtype, data, seed)
    return {
        "impl": "lean-numpy",
        "kind": "reference",
        "device": "cpu",
        "calls": {"train": lean.train_step, "infer": lean.forward},
        "samples": {"train": shape.batch, "infer": shape.batch},
        "memory": _warm(lean.train_step, None)["memory"],
    }


def _peer_impls(
    shape: Shape,
    dtype: str,
    data: HostData,
    backends: list[Backend],
    seed: int,
    skipped: list[dict],
) -> list[dict[str, Any]]:
    """scikit-learn, PyTorch and JAX on the CPU, PyTorch on CUDA beside a GPU backend, where
    installed; the others are appended to ``skipped``."""
    makers: list[tuple[str, Callable[[], Peer]]] = []
    if not shape.gpu_only:
        makers.append(("sklearn", lambda: sklearn_peer(shape, dtype, data, seed)))
        makers.append(("torch-cpu", lambda: torch_peer(shape, dtype, data, "cpu", seed)))
        makers.append(("jax-cpu", lambda: jax_peer(shape, dtype, data, seed)))
    if any(is_gpu(b) for b in backends):
        makers.append(("torch-cuda", lambda: torch_peer(shape, dtype, data, "cuda", seed)))
    impls: list[dict[str, Any]] = []
    for name, make in makers:
        try:
            peer = make()
        except PeerUnavailable as exc:
            skipped.append({"what": name, "shape": shape.name, "dtype": dtype, "reason": str(exc)})
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
    return impls


def _timed_row(
    impl: dict[str, Any], shape: Shape, dtype: str, timings: dict[Any, Timing]
) -> dict[str, Any]:
    """One table row: the implementation's rates with their spread, GFLOP/s and memory."""
    row: dict[str, Any] = {
        "impl": impl["impl"],
        "kind": impl["kind"],
        "label": _impl_label(impl["impl"], impl["kind"]),
        "device": impl["device"],
        "shape": shape.name,
        "layers": list(shape.layers),
        "batch": shape.batch,
        "dtype": dtype,
        "gemm_bound": shape.gemm_bound,
    }
    for what in _STEPS:
        if what in impl["calls"]:
            t = timings[(impl["impl"], what)]
            rate, slowest, fastest = t.rate(impl["samples"][what])
            row[f"{what}_seconds"] = t.median
            row[f"{what}_samples_per_sec"] = rate
            row[f"{what}_samples_per_sec_range"] = [slowest, fastest]
            row[f"{what}_rounds"] = t.rounds
        else:
            row[f"{what}_seconds"] = row[f"{what}_samples_per_sec"] = None
            row[f"{what}_samples_per_sec_range"] = row[f"{what}_rounds"] = None
    row["fit_epochs_per_call"] = impl.get("fit_epochs")
    row["train_gflops"] = shape.train_flops() / row["train_seconds"] / 1e9
    row.update(impl["memory"])
    row["min_train_bytes"] = shape.minimum_train_bytes(dtype)
    return row


def add_first_runs(rows: list[dict], shape: Shape, config: BenchConfig, skipped: list) -> None:
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


def add_ratios(rows: list[dict], gemm: dict[tuple[str, str], float]) -> None:
    """Ratios to the numpy backend, the lean reference and each peer; fraction of GEMM rate."""
    by_group: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        by_group.setdefault((row["shape"], row["dtype"]), {})[row["impl"]] = row
    for group in by_group.values():
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
            rate = _gemm_rate(row, group, gemm)
            row["gemm_gflops"] = rate
            bound = rate and row["gemm_bound"]
            row["gemm_fraction"] = row["train_gflops"] / rate if bound else None


def _gemm_rate(
    row: dict, group: dict[str, dict], gemm: dict[tuple[str, str], float]
) -> float | None:
    """The GEMM rate a row is held to: its backend's, else (references and peers) the best
    rate of a backend of the group on the same device."""
    rate = gemm.get((row["impl"], row["dtype"]))
    if rate is None:
        same_device = [
            g
            for (impl, dt), g in gemm.items()
            if dt == row["dtype"] and group.get(impl, {}).get("device") == row["device"]
        ]
        rate = max(same_device) if same_device else None
    return rate
