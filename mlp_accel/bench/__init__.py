"""Throughput measurement, shared by ``mlp-accel bench`` and the pytest-benchmark suite.

Every measured step is built once, here, as a zero-argument callable, and timed either by
pytest-benchmark (``benchmarks/``) or by :func:`time_interleaved` (``mlp-accel bench``):

- ``train``: :meth:`MLP.train_step` on a batch already on the device (forward, backward,
  Adam update), :func:`train_call`.
- ``fit``: one :func:`mlp_accel.fit` call of a few full-batch epochs, the public training
  API, :func:`fit_call`.
- ``infer``: :meth:`MLP.forward_device`, forward only, :func:`infer_call`.
- the inference rows (:mod:`.predict`): ``MLP.predict_proba`` from a NumPy batch at batch
  1, 64 and 65,536, beside onnxruntime on the exported model, scikit-learn and PyTorch
  (:mod:`.predict_peers`), with the spread.
- ``lean-numpy (ref)``: a minimal hand-written NumPy step for the same network
  (:class:`LeanNumpyMLP`), the floor the library's abstraction is measured against.
- peers: scikit-learn's ``partial_fit`` and PyTorch eager (CPU, and CUDA beside a GPU
  backend) on the same batch, layers, loss and optimizer, where installed.
- the machine's limit: the GEMM rate of each backend's matrix product (:func:`measure_gemm`).
- noise: every rate comes with its spread (min-max over the interleaved rounds) and round
  count, the load average before and after, and "beats" claims only where spreads are apart.
- conditions: ``contended`` keeps one core busy with another process (:func:`busy_process`);
  the first-run column times a fresh process on empty caches to its first epoch
  (:func:`first_run`).

Each backend runs the one :class:`~mlp_accel.model.MLP` class; only the backend differs. Data
is built on the device before timing, JIT code is warmed up by untimed calls, and every call
synchronizes the device before it returns, so GPU work is inside the timed region.

The package is imported lazily (by the CLI's ``bench`` command and the suite); it imports
scikit-learn, PyTorch and matplotlib only when a peer or a plot asks for them.

Modules: :mod:`.cases` (shapes, data, the library's steps), :mod:`.peers` (reference and
peers), :mod:`.machine` (memory, threads, versions, GEMM rate), :mod:`.contention` (the busy
process), :mod:`.firstrun` (first runs on empty caches), :mod:`.config` (what a run measures),
:mod:`.timing` (interleaved rounds, median and spread), :mod:`.rows` (the main table's rows and
ratios), :mod:`.sweep` (batch-size sweep and crossovers), :mod:`.predict` and
:mod:`.predict_peers` (the inference rows), :mod:`.runner` (the whole run),
:mod:`.report` (table, markdown, JSON, plot).
"""

from __future__ import annotations

from .cases import (
    DTYPES,
    LEARNING_RATE,
    QUICK_SHAPES,
    SHAPES,
    SWEEP_FAMILIES,
    HostData,
    Shape,
    Workload,
    fit_call,
    fit_epochs,
    gemm_call,
    host_data,
    infer_call,
    make_workload,
    sweep_batches,
    train_call,
    with_generic_hooks,
    write_table,
)
from .config import BenchConfig
from .contention import busy_process
from .firstrun import FIRST_RUN_NOTE, first_run
from .jax_peer import jax_peer
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
    thread_info,
    thread_limits,
)
from .peers import LeanNumpyMLP, Peer, PeerUnavailable, sklearn_peer, torch_peer
from .predict import (
    PREDICT_BATCHES,
    PREDICT_NETWORKS,
    QUICK_PREDICT_BATCHES,
    predict_scope,
    predict_threads,
    run_predict,
)
from .predict_peers import PREDICTORS
from .report import format_markdown, format_table, plot_report, write_json
from .runner import SCHEMA, run_bench
from .sweep import compare_sweep, crossovers
from .timing import SPREAD, Timing, ranges_overlap, time_interleaved, time_interleaved_stats

__all__ = [
    "DTYPES",
    "LEARNING_RATE",
    "QUICK_SHAPES",
    "SHAPES",
    "SWEEP_FAMILIES",
    "SCHEMA",
    "SPREAD",
    "Shape",
    "HostData",
    "Workload",
    "host_data",
    "make_workload",
    "train_call",
    "infer_call",
    "fit_call",
    "fit_epochs",
    "gemm_call",
    "sweep_batches",
    "write_table",
    "with_generic_hooks",
    "LeanNumpyMLP",
    "Peer",
    "PeerUnavailable",
    "sklearn_peer",
    "torch_peer",
    "jax_peer",
    "is_gpu",
    "shape_runs_on",
    "device_memory",
    "reset_peak_rss",
    "peak_rss_bytes",
    "step_allocation",
    "load_average",
    "measure_gemm",
    "thread_limits",
    "thread_info",
    "system_info",
    "BenchConfig",
    "Timing",
    "time_interleaved",
    "time_interleaved_stats",
    "ranges_overlap",
    "compare_sweep",
    "crossovers",
    "busy_process",
    "first_run",
    "FIRST_RUN_NOTE",
    "run_bench",
    "run_predict",
    "PREDICT_BATCHES",
    "QUICK_PREDICT_BATCHES",
    "PREDICT_NETWORKS",
    "PREDICTORS",
    "predict_scope",
    "predict_threads",
    "format_table",
    "format_markdown",
    "write_json",
    "plot_report",
]
