"""``backend="auto"`` and the numba kernel tier: chosen from the job and the machine alone.

A job is a network shape, a dtype, a row count, a batch size and a number of epochs. Each
backend's (and each numba kernel tier's) time for it is estimated as *start-up* (importing,
compiling kernels, starting a GPU) plus *steps x step time*, with a step time linear in the
batch's rows (a fixed cost per layer, and per row the matrix products' FLOPs at a product
rate plus the elementwise work). The constants are rough, measured on one core of the
project's 2-core machine; what matters is their ratios and the start-up costs.

The estimates never look at what a cache holds, at timings or at the load: a compile is
always counted as if it had to be paid, so the same job makes the same choice on every run
(a warm cache only makes the chosen path start sooner), and a fit's result depends on its
inputs alone.

- NumPy starts at once; its step pays a fixed cost per layer and ~10 ns per narrow layer
  and row (temporaries, calls) beside BLAS.
- Numba runs, by tier: the per-layer kernels beside NumPy's BLAS (~1.1x NumPy), or for a
  narrow network a whole-network kernel, generic (one compile per dtype, activation set and
  output) or specialized on the widths (one compile per shape, faster on the smallest
  networks). Each tier's compile is paid before the first step.
- CuPy pays for starting the GPU and moving the data, then runs products far faster.

The fastest estimate wins, but a backend other than NumPy must save at least
:data:`MIN_GAIN` of NumPy's time and :data:`MIN_SAVING_S` seconds: where the estimates are
close, the backend with no start-up cost is the safer choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from .base import NetworkSpec
from .numba.paths import MAX_WIDTH, fused_supports, unrolled

__all__ = [
    "Job",
    "BackendChoice",
    "estimate_seconds",
    "numba_tier",
    "choose_backend",
    "RULE",
]

#: Widest layer of the Numba backend's fused whole-network kernel.
NARROW_MAX_WIDTH = MAX_WIDTH
#: Seconds to import Numba and load cached kernels.
NUMBA_IMPORT_S = 0.35
# Compile times measured on a quiet core of the project's 2-core machine (float32, relu
# hidden layers and a sigmoid output, empty caches; two runs each).
#: Seconds to compile the per-layer kernels a network runs, the optimizer's included (once
#: per activation and dtype): 1.5 + 2.1-2.3 s.
NUMBA_COMPILE_LAYERS_S = 3.7
#: Seconds to compile the optimizer kernels (once per dtype), which every tier runs: 1.5 s.
NUMBA_COMPILE_OPTIM_S = 1.5
#: Seconds to compile a narrow network's generic network kernel (once per dtype, activation
#: set and output, whatever the widths): 3.3-3.6 s.
NUMBA_COMPILE_GENERIC_S = 3.5
#: Seconds to compile the unrolled kernel specialized on one of the smallest shapes: 2.5-3.0 s.
NUMBA_COMPILE_SPECIALIZED_S = 2.8
#: Seconds to start a GPU backend (context, kernels, first transfers).
CUPY_START_S = 1.5
#: A backend other than NumPy is chosen only when it saves this fraction of NumPy's time...
MIN_GAIN = 0.10
#: ... and at least this many seconds.
MIN_SAVING_S = 0.10
#: Rows assumed for a job whose row count is unknown (a stream of batches).
UNKNOWN_ROWS = 1_000_000

#: One line per rule, for ``mlp-accel backends``.
RULE = (
    "chosen per job, at the first ma.fit, from the job and the machine alone (never from "
    "timings or the cache): estimated time = start-up + steps x step time for each backend here;",
    "numpy starts at once; numba pays its compile before the first step (counted on every "
    "run, cached on disk after the first) and runs narrow networks (layers <= 64 wide) "
    "several times faster; cupy pays ~1.5 s to start the GPU;",
    f"a backend other than numpy must save >= {MIN_GAIN:.0%} and >= {MIN_SAVING_S} s; "
    "model.backend_choice says what ma.fit chose and why, and mlp-accel train prints it.",
)


@dataclass(frozen=True)
class Job:
    """What :func:`choose_backend` knows about a training run.

    Parameters
    ----------
    widths : tuple of int
        Layer widths ``(n_in, ..., n_out)``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    rows : int, optional
        Training rows; ``None`` when unknown (a stream of batches).
    epochs : int
        Passes over the data.
    batch_size : int, optional
        Rows per step; ``None`` is the full batch.
    activations : tuple of str, optional
        One per layer, where known.
    loss : str, optional
        The loss, where known.
    """

    widths: tuple[int, ...]
    dtype: str = "float32"
    rows: int | None = None
    epochs: int = 1
    batch_size: int | None = None
    #: The activations and loss, where known: they decide which numba kernels exist.
    activations: tuple[str, ...] = ()
    loss: str = "squared_error"

    @property
    def narrow(self) -> bool:
        """Whether every layer fits the Numba backend's fused kernel."""
        return max(self.widths) <= NARROW_MAX_WIDTH

    @property
    def steps(self) -> int:
        """Optimizer steps in the whole run."""
        rows = UNKNOWN_ROWS if self.rows is None else max(int(self.rows), 1)
        batch = rows if self.batch_size is None else min(int(self.batch_size), rows)
        return self.epochs * math.ceil(rows / batch)

    @property
    def batch_rows(self) -> int:
        """Rows in a full step."""
        rows = UNKNOWN_ROWS if self.rows is None else max(int(self.rows), 1)
        return rows if self.batch_size is None else min(int(self.batch_size), rows)


@dataclass
class BackendChoice:
    """What ``auto`` chose, and why.

    Attributes
    ----------
    name : str
        The backend chosen.
    reason : str
        One line: the estimates compared, or why no job was known.
    estimates : dict of str to float
        Estimated seconds per backend considered.
    """

    name: str
    reason: str
    estimates: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _flops_and_units(widths: tuple[int, ...]) -> tuple[float, float, int]:
    pairs = list(zip(widths[:-1], widths[1:]))
    flops = 6.0 * sum(a * b for a, b in pairs)  # forward 2, backward 4 per weight
    units = float(sum(widths[1:]))
    return flops, units, len(pairs)


def _numpy_step(job: Job) -> float:
    flops, units, layers = _flops_and_units(job.widths)
    gemm = 45e9 if job.dtype == "float64" else 90e9  # one core's BLAS rate on such products
    return layers * 25e-6 + job.batch_rows * (flops / gemm + units * 3e-9 + layers * 15e-9)


def numba_tier_seconds(job: Job) -> dict[str, float]:
    """Estimated seconds of ``job`` on each numba kernel tier it may run, compiles included.

    Step times measured on a quiet core of the project's machine (float32, Adam): NumPy
    74 ns a row on 2-4-3-1, 151 ns on 2-16-16-1, 460 ns on 64-48-10, plus ~80 us a step;
    the per-layer kernels about NumPy's time a row with less fixed cost (86 and 143 ns, ~50
    us); the generic network kernel ~25 ns a row plus the FLOPs at 35 GFLOP/s (27, 71 and
    716 ns); the unrolled kernel specialized on 2-4-3-1, 11 ns a row.
    """
    flops, units, layers = _flops_and_units(job.widths)
    double = 2.0 if job.dtype == "float64" else 1.0
    rows, steps = job.batch_rows, job.steps
    gemm = 45e9 if job.dtype == "float64" else 90e9
    layer_step = layers * 18e-6 + rows * (flops / gemm + units * 2.6e-9 + layers * 20e-9)
    seconds = {"layers": NUMBA_COMPILE_LAYERS_S + steps * layer_step}
    spec = NetworkSpec(tuple(job.widths), job.activations, job.loss, job.dtype)
    if fused_supports(spec) if job.activations else job.narrow:
        generic_step = 15e-6 + rows * double * (25e-9 + flops / 35e9)
        seconds["generic"] = NUMBA_COMPILE_OPTIM_S + NUMBA_COMPILE_GENERIC_S + steps * generic_step
        if unrolled(spec):
            special_step = 10e-6 + rows * double * (7e-9 + flops / 35e9)
            seconds["specialized"] = (
                NUMBA_COMPILE_OPTIM_S + NUMBA_COMPILE_SPECIALIZED_S + steps * special_step
            )
    return seconds


def numba_tier(spec: NetworkSpec, job: Job | None = None) -> tuple[str, str]:
    """The numba kernel tier for ``job`` on the network ``spec``, and why.

    Without a job: the generic network kernel for a narrow network, else the per-layer
    kernels. With one: the tier of least estimated time, compiles counted as paid (rent or
    buy: a kernel is bought only when the job is long enough to repay its compile).
    """
    if job is None:
        if fused_supports(spec):
            return "generic", "narrow network, no job known: the generic network kernel"
        return "layers", "the per-layer kernels (a layer wider than 64 or no network kernel)"
    job = Job(
        tuple(spec.widths),
        spec.dtype,
        job.rows,
        job.epochs,
        job.batch_size,
        tuple(spec.activations),
        spec.loss,
    )
    seconds = numba_tier_seconds(job)
    tier = min(seconds, key=lambda t: (seconds[t], t != "generic"))
    shown = ", ".join(f"{t} {seconds[t]:.3g} s" for t in sorted(seconds, key=seconds.get))
    return tier, f"estimated {shown} (compiles included)"


def estimate_seconds(name: str, job: Job) -> float:
    """Estimated seconds for ``job`` on backend ``name``, start-up and compiles included.

    Parameters
    ----------
    name : {"numpy", "numba", "cupy"}
    job : Job
    """
    flops, units, layers = _flops_and_units(job.widths)
    double = job.dtype == "float64"
    if name == "numpy":
        return job.steps * _numpy_step(job)
    if name == "numba":
        return NUMBA_IMPORT_S + min(numba_tier_seconds(job).values())
    if name == "cupy":
        rows = job.batch_rows
        step = layers * 60e-6 + rows * (flops / (10e12 if double else 40e12) + units * 1e-11)
        return CUPY_START_S + job.steps * step
    raise ValueError(f"no cost model for backend {name!r}; known: numpy, numba, cupy")


def choose_backend(job: Job | None, available: Iterable[str]) -> BackendChoice:
    """The backend for ``job`` among ``available``: a pure function of its inputs.

    Parameters
    ----------
    job : Job or None
        ``None`` when no job is known yet (a model built, not yet fitted): NumPy, which
        starts at once, until :func:`mlp_accel.fit` knows the rows and epochs.
    available : iterable of str
        Backends that start here.

    Returns
    -------
    BackendChoice
    """
    names = [n for n in available if n in ("numpy", "numba", "cupy")]
    if not names:
        raise ValueError("no backend with a cost model is available (numpy, numba, cupy)")
    fallback = "numpy" if "numpy" in names else names[0]
    if job is None:
        return BackendChoice(fallback, "no job known yet: numpy until fit knows rows and epochs")
    estimates = {n: estimate_seconds(n, job) for n in names}
    best = min(names, key=lambda n: (estimates[n], n != fallback))
    if best != fallback and fallback == "numpy":
        base = estimates["numpy"]
        saving = base - estimates[best]
        if saving < MIN_GAIN * base or saving < MIN_SAVING_S:
            best = "numpy"
    rows = "unknown" if job.rows is None else f"{job.rows:,}"
    shown = ", ".join(f"{n} {estimates[n]:.3g} s" for n in sorted(estimates, key=estimates.get))
    reason = (
        f"estimated {shown} for {'-'.join(map(str, job.widths))} {job.dtype}, "
        f"{rows} rows x {job.epochs} epochs ({job.steps:,} steps), compiles included"
    )
    return BackendChoice(best, reason, estimates)
