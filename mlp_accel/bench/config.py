"""What a bench run measures: :class:`BenchConfig`, checked before anything starts."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..backends import BACKENDS
from .cases import DTYPES, SHAPES, Shape

__all__ = ["BenchConfig"]


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
    networks : list of Shape, optional
        The user's networks (:func:`~mlp_accel.bench.cases.network_shape`), measured after
        ``shapes``; with networks and no ``shapes``, only the networks.
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
    predict : bool
        Measure the inference rows (:mod:`~mlp_accel.bench.predict`): ``predict_proba``
        samples/s at :func:`~mlp_accel.bench.predict.predict_batches` on each backend, beside
        onnxruntime, scikit-learn and PyTorch where installed.
    predict_only : bool
        Measure the inference rows alone: no GEMM rate, training table or sweep.
    predict_batch_sizes : list of int, optional
        Batch sizes of the inference rows; default 1, 64 and 65,536 (1 and 64 with
        ``quick``).
    seed : int
        Seeds data and initial weights.
    log : callable, optional
        Receives one line per stage (the CLI prints them to stderr).
    """

    backends: list[str] | None = None
    shapes: list[str] | None = None
    networks: list[Shape] | None = None
    dtypes: Sequence[str] = DTYPES
    quick: bool = False
    peers: bool = True
    sweep: bool = True
    sweep_batch_sizes: list[int] | None = None
    sweep_dtype: str | None = None
    threads: int | None = None
    contended: bool = False
    first_run: bool | None = None
    predict: bool = True
    predict_only: bool = False
    predict_batch_sizes: list[int] | None = None
    seed: int = 0
    log: Callable[[str], None] | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the valid choices for any unknown name, or the field
        holding a bad number: before anything is started or measured."""
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
        for what, sizes in (
            ("sweep", self.sweep_batch_sizes),
            ("predict", self.predict_batch_sizes),
        ):
            for b in sizes or []:
                if not _is_integer(b, minimum=1):
                    raise ValueError(f"{what} batch sizes must be positive integers, got {b!r}")
        # Both would otherwise fail only once measuring began: the thread limit when it is
        # applied, the seed when the first case's data is drawn.
        if self.threads is not None and not _is_integer(self.threads, minimum=1):
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if not _is_integer(self.seed, minimum=0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def measure_first_run(self) -> bool:
        """Whether the first-run column is measured (explicit choice, else not with quick)."""
        return (not self.quick) if self.first_run is None else bool(self.first_run)

    @property
    def timing(self) -> dict[str, float]:
        """Keyword arguments of :func:`~.timing.time_interleaved_stats` for the main table."""
        if self.quick:
            return {"min_rounds": 3, "min_time": 0.4}
        return {"min_rounds": 5, "min_time": 2.0}


def _is_integer(value: object, *, minimum: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
