"""``mlp-accel bench``: throughput per backend, beside peers.

This module, and the bench package it uses, are imported only when ``bench`` is the command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._options import (
    _add_seed_option,
    _add_threads_option,
    _check_output_path,
    _int_list,
    _name_list,
)

__all__ = ["add_arguments", "run"]

#: The batch size of ``--layers`` when ``--batch-size`` is not given.
DEFAULT_BATCH = 128


def add_arguments(bench: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add bench's arguments to its parser; it takes --backends, not ``backend_option``."""
    from ..bench.cases import QUICK_SHAPES, SHAPES

    bench.add_argument(
        "--backends",
        type=_name_list,
        help="comma-separated backend names (default: every registered backend)",
    )
    bench.add_argument(
        "--shapes",
        type=_name_list,
        help=f"comma-separated cases: {', '.join(SHAPES)} (default: all; "
        f"with --quick: {', '.join(QUICK_SHAPES)})",
    )
    bench.add_argument(
        "--layers",
        type=_int_list,
        metavar="N,N,...",
        help="your network's widths, inputs to outputs (e.g. 64,128,10): benched on every "
        "backend at --batch-size, ending with the backend to use; alone, it replaces the "
        "suite's cases and the sweep",
    )
    bench.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help=f"batch size of --layers (default {DEFAULT_BATCH})",
    )
    bench.add_argument(
        "--dtype",
        default="both",
        choices=("float32", "float64", "both"),
        help="dtype to measure (default both)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="fewer rounds, shorter sweep, no mnist-4096"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    bench.add_argument(
        "--plot", metavar="FILE.png", help="bar chart of samples/s and the sweep curves"
    )
    bench.add_argument(
        "--markdown", action="store_true", help="print the table as markdown (for the README)"
    )
    _add_threads_option(
        bench,
        "limit this package's worker threads, BLAS (for the peers) and PyTorch to N threads "
        "(default: each library's own setting); on a busy or shared machine use --threads 1",
    )
    bench.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the lean reference and the peers (scikit-learn, PyTorch)",
    )
    bench.add_argument("--no-sweep", action="store_true", help="skip the batch-size sweep")
    bench.add_argument(
        "--contended",
        action="store_true",
        help="keep one core busy with another process during the whole run (started and "
        "stopped by the bench), as on a shared machine",
    )
    bench.add_argument(
        "--first-run",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the first-run column: a fresh process on empty caches to its first "
        "epoch, per backend and peer (default: on; off with --quick, it costs seconds of "
        "compilation per numba row)",
    )
    bench.add_argument(
        "--sweep-batches",
        type=_int_list,
        metavar="N,N,...",
        help="batch sizes of the sweep (default 2^6..2^17; 2^6..2^15 with --quick)",
    )
    _add_predict_arguments(bench)
    _add_seed_option(bench, "seeds data and weights (default 0)")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _add_predict_arguments(bench: argparse.ArgumentParser) -> None:
    """The options of the inference rows (``mlp_accel.bench.predict``)."""
    bench.add_argument(
        "--predict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the inference rows: predict_proba samples/s at batch 1 (one thread), 64 "
        "and 65,536 (the usable CPUs) on each backend, beside onnxruntime on the exported "
        "model, scikit-learn and PyTorch where installed (default: on; 1 and 64 with --quick)",
    )
    bench.add_argument(
        "--predict-only",
        action="store_true",
        help="only the inference rows: no GEMM rate, training table or sweep",
    )
    bench.add_argument(
        "--predict-batches",
        type=_int_list,
        metavar="N,N,...",
        help="batch sizes of the inference rows (default 1,64,65536; 1,64 with --quick)",
    )


def run(args: argparse.Namespace) -> int:
    from .. import bench

    _check_output_path(args.json, "--json")
    _check_output_path(args.plot, "--plot")
    if args.plot:
        bench.report._pyplot()  # a missing matplotlib is reported before the run, not after
    dtypes = bench.DTYPES if args.dtype == "both" else (args.dtype,)
    networks = _networks(args)

    def log(line: str) -> None:
        sys.stderr.write(f"[bench] {line}\n")
        sys.stderr.flush()

    config = bench.BenchConfig(
        backends=args.backends or None,
        shapes=args.shapes or None,
        networks=networks,
        dtypes=dtypes,
        quick=args.quick,
        peers=not args.no_peers,
        # The sweep's networks are the suite's: beside --layers alone they answer nothing asked.
        sweep=not args.no_sweep and not (networks and not args.shapes),
        sweep_batch_sizes=args.sweep_batches or None,
        threads=args.threads,
        contended=args.contended,
        first_run=args.first_run,
        predict=args.predict,
        predict_only=args.predict_only,
        predict_batch_sizes=args.predict_batches or None,
        seed=args.seed,
        log=None if args.quiet else log,
    )
    report = bench.run_bench(config)
    print(bench.format_markdown(report) if args.markdown else bench.format_table(report))
    if args.json:
        bench.write_json(report, args.json)
    if args.plot:
        bench.plot_report(report, args.plot)
    return 0


def _networks(args: argparse.Namespace) -> list | None:
    """The ``--layers`` network as a bench case, checked before anything is measured.

    Raises
    ------
    ValueError
        ``--batch-size`` without ``--layers``, or widths or a batch size below 1.
    """
    from ..bench.cases import network_shape

    if args.layers is None:
        if args.batch_size is not None:
            raise ValueError("--batch-size needs --layers (the network to bench)")
        return None
    return [network_shape(args.layers, args.batch_size or DEFAULT_BATCH)]
