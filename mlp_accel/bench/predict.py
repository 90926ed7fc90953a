"""The inference rows of ``mlp-accel bench``: ``predict_proba`` samples/s, beside peers.

For each network (by default the suite's 64-256-256-10 and 784-1024-1024-10) and batch size
(1, 64 and 65,536; 1 and 64 with ``quick``), the library's ``MLP.predict_proba`` on every
backend and the peers of :mod:`.predict_peers` (onnxruntime on the exported model,
scikit-learn, PyTorch) predict the same host batch with the same weights, timed in the same
interleaved rounds: the median samples/s and the spread (the slowest and fastest round).

Threads: batch 1 is timed single-threaded everywhere (one request at a time, the latency
case); larger batches with the machine's usable CPUs (:func:`mlp_accel.usable_cpus`), or
``--threads`` where it is lower. Each library gets the count through its own API for this
process only (this package's worker threads, BLAS through threadpoolctl, onnxruntime's
session options, ``torch.set_num_threads``), restored after each case. Every output is
checked against the numpy backend's before timing; a peer that disagrees beyond rounding is
left out, with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..backends import Backend, _threads
from ..model import MLP
from .cases import SHAPES, Shape
from .config import BenchConfig
from .predict_peers import PREDICTORS, PeerUnavailable
from .timing import ranges_overlap, time_interleaved_stats

__all__ = [
    "PREDICT_BATCHES",
    "QUICK_PREDICT_BATCHES",
    "PREDICT_NETWORKS",
    "predict_batches",
    "predict_networks",
    "predict_threads",
    "predict_scope",
    "host_batch",
    "run_predict",
]

#: Batch sizes of the inference rows: one request, a small batch, a bulk scoring batch.
PREDICT_BATCHES: tuple[int, ...] = (1, 64, 65_536)
#: ``--quick`` leaves out the bulk batch (seconds per call on 784-1024-1024-10).
QUICK_PREDICT_BATCHES: tuple[int, ...] = (1, 64)
#: The networks of the inference rows, by family, unless the run names others.
PREDICT_NETWORKS: dict[str, Shape] = {
    "mlp256": SHAPES["mlp256-1024"],
    "mnist": SHAPES["mnist-4096"],
}
#: Largest difference from the numpy backend's probabilities a peer may show, by dtype.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def predict_batches(config: BenchConfig) -> list[int]:
    """The batch sizes the run predicts: ``--predict-batches``, else by ``quick``."""
    if config.predict_batch_sizes:
        return list(config.predict_batch_sizes)
    return list(QUICK_PREDICT_BATCHES if config.quick else PREDICT_BATCHES)


def predict_networks(config: BenchConfig) -> list[Shape]:
    """The networks the run predicts with: the user's (``--layers``) and the families of the
    named cases (``--shapes``); with neither, :data:`PREDICT_NETWORKS`."""
    if not config.shapes and not config.networks:
        return list(PREDICT_NETWORKS.values())
    named = [SHAPES[name] for name in config.shapes or []]
    families = {s.family: s for s in [*(config.networks or []), *named]}
    return list(families.values())


def predict_threads(batch: int, limit: int | None = None) -> int:
    """Threads of every implementation at ``batch``: 1 for one row, else the usable CPUs
    (at most ``limit``)."""
    if batch == 1:
        return 1
    usable = _threads.usable_cpus()
    return min(usable, limit) if limit else usable


def run_predict(backends: list[Backend], config: BenchConfig, skipped: list[dict]) -> list[dict]:
    """The inference rows: every backend and peer on each network and batch size."""
    dtype = config.sweep_dtype or config.dtypes[0]
    log = config.log or (lambda line: None)
    rows: list[dict] = []
    for shape in predict_networks(config):
        network = (shape.layers, shape.activations, shape.loss)
        base = MLP(*network, backend="numpy", dtype=dtype, seed=config.seed)
        models = {b.name: base if b.name == "numpy" else base.to(b) for b in backends}
        for batch in predict_batches(config):
            log(f"predicting {shape.family} at batch {batch} ({dtype})")
            rows += _measure_case(shape, batch, dtype, models, config, skipped)
    return rows


def host_batch(shape: Shape, batch: int, dtype: str, seed: int = 0) -> np.ndarray:
    """``batch`` rows of standard normal features of ``shape``'s network, on the host."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, shape.layers[0]), dtype=np.dtype(dtype).type)


@contextlib.contextmanager
def predict_scope(threads: int) -> Iterator[contextlib.ExitStack]:
    """BLAS (threadpoolctl) and this package's worker threads held to ``threads`` for a
    ``with`` block. The stack it gives takes the peers' own settings (the PyTorch peer's
    ``torch.set_num_threads``), and everything is put back on exit."""
    with contextlib.ExitStack() as restore:
        limits = _threads.threadpoolctl().threadpool_limits(limits=threads, user_api="blas")
        restore.enter_context(limits)
        restore.enter_context(_threads.threads(threads))
        yield restore


def _measure_case(
    shape: Shape,
    batch: int,
    dtype: str,
    models: dict[str, MLP],
    config: BenchConfig,
    skipped: list[dict],
) -> list[dict]:
    """One network at one batch size: every implementation, checked, then timed."""
    X = host_batch(shape, batch, dtype, config.seed)
    threads = predict_threads(batch, config.threads)
    where = {"shape": f"{shape.family}@{batch}", "dtype": dtype}
    with predict_scope(threads) as restore:
        calls: dict[tuple[str, str], Callable[[], Any]] = {
            (name, "backend"): (lambda m=model: m.predict_proba(X))
            for name, model in models.items()
        }
        if config.peers and "numpy" in models:
            for name, make in PREDICTORS.items():
                try:
                    calls[(name, "peer")] = make(models["numpy"], X, threads, restore)
                except PeerUnavailable as exc:
                    # a library missing here is said once, not for every case
                    if not any(s["what"] == name and s["reason"] == str(exc) for s in skipped):
                        skipped.append({"what": name, **where, "reason": str(exc)})
        diffs = _differences(calls, TOLERANCE[dtype], skipped, where)
        timings = time_interleaved_stats(calls, **config.timing)
    rows = []
    for (name, kind), timing in timings.items():
        rate, slowest, fastest = timing.rate(batch)
        rows.append(
            {
                "network": shape.family,
                "layers": list(shape.layers),
                "batch": batch,
                "dtype": dtype,
                "impl": name,
                "kind": kind,
                "label": name if kind == "backend" else f"{name} (peer)",
                "threads": threads,
                "seconds": timing.median,
                "samples_per_sec": rate,
                "samples_per_sec_range": [slowest, fastest],
                "rounds": timing.rounds,
                "max_abs_diff": diffs.get((name, kind)),
            }
        )
    _add_ratios(rows)
    return rows


def _differences(
    calls: dict[tuple[str, str], Callable[[], Any]],
    tolerance: float,
    skipped: list[dict],
    where: dict[str, str],
) -> dict[tuple[str, str], float]:
    """Each output's largest difference from the first backend's (numpy where it runs); a
    peer beyond ``tolerance`` is dropped from ``calls`` and reported in ``skipped``."""
    outputs = {key: np.asarray(fn()) for key, fn in calls.items()}
    reference = next(iter(outputs.values()))
    diffs = {}
    for key, out in outputs.items():
        # scikit-learn gives a single sigmoid output as two columns, 1 - p and p
        out = out[:, 1:] if out.shape[1] == reference.shape[1] + 1 else out
        diffs[key] = (
            float(np.max(np.abs(out - reference))) if out.shape == reference.shape else np.inf
        )
        if key[1] == "peer" and not diffs[key] <= tolerance:
            del calls[key]
            reason = f"probabilities differ from {next(iter(outputs))[0]}'s by {diffs[key]:.3g}"
            skipped.append({"what": key[0], **where, "reason": reason})
    return diffs


def _add_ratios(rows: list[dict]) -> None:
    """``ratio_to_onnxruntime`` of each row, and whether the two spreads overlap."""
    ort = next((r for r in rows if r["impl"] == "onnxruntime"), None)
    for row in rows:
        if ort is None or row is ort:
            row["ratio_to_onnxruntime"] = row["ratio_to_onnxruntime_overlaps"] = None
            continue
        row["ratio_to_onnxruntime"] = row["samples_per_sec"] / ort["samples_per_sec"]
        row["ratio_to_onnxruntime_overlaps"] = ranges_overlap(
            row["samples_per_sec_range"], ort["samples_per_sec_range"]
        )
