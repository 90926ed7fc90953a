"""The whole run behind ``mlp-accel bench``: :func:`run_bench` and the report it returns.

The steps live in their own modules: :mod:`.config` (what is measured), :mod:`.timing`
(interleaved rounds and their spread), :mod:`.rows` (the main table), :mod:`.sweep` (the
batch-size sweep and its claims). This module starts the backends, holds the run's
conditions (thread limit, busy process) around the measurements and assembles the report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..backends import BACKENDS, Backend, BackendUnavailableError, get_backend
from .advice import backend_advice, threads_advice
from .cases import LEARNING_RATE, QUICK_SHAPES, SHAPES, Shape
from .config import BenchConfig
from .contention import busy_process
from .machine import load_average, measure_gemm, system_info, thread_limits
from .predict import run_predict
from .rows import add_ratios, measure_group
from .sweep import compare_sweep, run_sweep
from .timing import SPREAD

__all__ = ["SCHEMA", "run_bench"]

SCHEMA = "mlp_accel.bench/2"


def run_bench(config: BenchConfig | None = None) -> dict[str, Any]:
    """Run the measurements and return the report (JSON-serializable).

    Keys: ``schema``, ``header`` (machine, threads, versions, GPU, load average before and
    after, the busy process of ``contended``, the spread's definition), ``config``, ``gemm``
    (rate per backend and dtype), ``rows`` (one per implementation, shape and dtype, each
    rate with its ``*_range`` [slowest, fastest round] and ``*_rounds``), ``sweep``,
    ``predict`` (the inference rows: ``predict_proba`` samples/s per network, batch size and
    implementation, with their spread, threads and ratio to onnxruntime),
    ``crossovers`` (claims the spreads support) and ``warnings`` (claims withheld because
    the spreads overlap), ``skipped`` (what did not run, and why), ``advice`` (lines for
    the reader: ``--threads 1`` on a busy machine, the backend for each of ``networks``),
    ``wall_seconds``.

    Raises
    ------
    ValueError
        Unknown backend, shape or dtype names; the message lists the valid ones.
    BackendUnavailableError
        No backend could start.
    """
    config = BenchConfig() if config is None else config
    config.validate()
    t_start = time.perf_counter()
    load_before = load_average()
    log = config.log or (lambda line: None)
    skipped: list[dict] = []
    backends = _start_backends(config.backends or list(BACKENDS), skipped)
    shapes = [SHAPES[name] for name in config.shapes or []] + list(config.networks or [])
    if not shapes:
        shapes = [SHAPES[name] for name in (QUICK_SHAPES if config.quick else SHAPES)]
    shape_names = [s.name for s in shapes]
    busy = busy_process() if config.contended else contextlib.nullcontext(None)
    with busy as contention, thread_limits(config.threads):
        if contention:
            where = f"CPU {contention['cpu']}" if contention["pinned"] else "no CPU (unpinned)"
            log(f"contended: busy process {contention['pid']} pinned to {where}")
        gemm_records: list[dict] = []
        rows: list[dict] = []
        sweep: list[dict] = []
        if not config.predict_only:
            gemm_records = _measure_gemms(backends, config, log)
            rows = _measure_table(shapes, backends, config, skipped, log)
            add_ratios(rows, {(r["backend"], r["dtype"]): r["gflops"] for r in gemm_records})
            sweep = run_sweep(backends, config, skipped) if config.sweep else []
        want = config.predict or config.predict_only
        predict = run_predict(backends, config, skipped) if want else []
        header = system_info(backends)
    header["load_average_before"] = load_before
    header["load_average_after"] = load_average()
    header["contended"] = contention
    header["spread"] = SPREAD
    claims, warnings = compare_sweep(sweep)
    return {
        "schema": SCHEMA,
        "header": header,
        "config": _config_record(config, backends, shape_names),
        "gemm": gemm_records,
        "rows": rows,
        "sweep": sweep,
        "predict": predict,
        "crossovers": claims,
        "warnings": warnings,
        "skipped": skipped,
        "advice": [
            *threads_advice(header, config.threads),
            *(backend_advice(rows, shape) for shape in config.networks or []),
        ],
        "wall_seconds": time.perf_counter() - t_start,
    }


def _start_backends(names: Sequence[str], skipped: list[dict]) -> list[Backend]:
    """The backends that start here; the others go to ``skipped`` with the reason.

    Raises
    ------
    BackendUnavailableError
        None of them started; the message holds every reason.
    """
    started = []
    for name in names:
        try:
            started.append(get_backend(name))
        except BackendUnavailableError as exc:
            skipped.append({"what": name, "reason": str(exc)})
    if not started:
        raise BackendUnavailableError(
            "no backend could start: " + "; ".join(s["reason"] for s in skipped)
        )
    return started


def _measure_gemms(
    backends: list[Backend], config: BenchConfig, log: Callable[[str], None]
) -> list[dict]:
    """The machine's limit: the GEMM rate of every backend for every dtype."""
    records = []
    for backend in backends:
        for dtype in config.dtypes:
            record = measure_gemm(backend, dtype, quick=config.quick)
            records.append(record)
            log(f"GEMM {backend.name} {dtype}: {record['gflops']:.1f} GFLOP/s")
    return records


def _measure_table(
    shapes: list[Shape],
    backends: list[Backend],
    config: BenchConfig,
    skipped: list[dict],
    log: Callable[[str], None],
) -> list[dict]:
    """The main table's rows, one group of implementations per shape and dtype."""
    rows: list[dict] = []
    for shape in shapes:
        for dtype in config.dtypes:
            log(f"measuring {shape.name} {dtype}")
            rows += measure_group(shape, dtype, backends, config, skipped)
    return rows


def _config_record(
    config: BenchConfig, backends: list[Backend], shape_names: list[str]
) -> dict[str, Any]:
    """The report's ``config``: what was asked for, as it was run."""
    return {
        "backends": [b.name for b in backends],
        "shapes": shape_names,
        "dtypes": list(config.dtypes),
        "quick": config.quick,
        "peers": config.peers,
        "threads": config.threads,
        "contended": config.contended,
        "first_run": config.measure_first_run,
        "predict": config.predict or config.predict_only,
        "predict_only": config.predict_only,
        "seed": config.seed,
        "timing": config.timing,
        "learning_rate": LEARNING_RATE,
    }
