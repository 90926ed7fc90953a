"""``backend="auto"``: choose the backend by the job, not by the machine alone.

A job is a network shape, a dtype, a row count, a batch size and a number of epochs. Each
backend's time for it is estimated as *start-up* (importing, loading or compiling kernels,
starting a GPU) plus *steps x step time*, with a step time linear in the batch's rows (a
fixed cost per layer, and per row the matrix products' FLOPs at a product rate plus the
elementwise work). The constants are rough, measured on one core of the project's 2-core
machine (see the benchmark table); what matters is their ratios and the start-up costs:

- NumPy starts at once; its step pays a fixed cost per layer and ~10 ns per narrow layer
  and row (temporaries, calls) beside BLAS.
- Numba runs a fused whole-network kernel for narrow networks (several times NumPy on
  small widths) and NumPy's BLAS beside fused elementwise kernels otherwise (~1.1x NumPy).
  It pays for importing Numba and loading cached kernels, and for compiling those not
  cached yet (:func:`numba_kernels_cached` looks at the on-disk cache, without importing
  Numba).
- CuPy pays for starting the GPU and moving the data, then runs products far faster.

The fastest estimate wins, but a backend other than NumPy must save at least
:data:`MIN_GAIN` of NumPy's time and :data:`MIN_SAVING_S` seconds: where the estimates are
close, the backend with no start-up cost and no compile stall is the safer choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._numba_paths import (
    MAX_WIDTH,
    cache_dir_candidate,
    generic_key,
    generic_title,
    numba_index_dirs,
)
from .base import NetworkSpec

__all__ = [
    "Job",
    "BackendChoice",
    "estimate_seconds",
    "choose_backend",
    "numba_kernels_cached",
    "RULE",
]

#: Widest layer of the Numba backend's fused whole-network kernel.
NARROW_MAX_WIDTH = MAX_WIDTH
#: Seconds to import Numba and load cached kernels.
NUMBA_IMPORT_S = 0.35
#: Seconds to compile the per-layer kernels a network runs, in a background child process
#: (once per activation and dtype; cached on disk after).
NUMBA_COMPILE_GENERIC_S = 3.0
#: Seconds to compile a narrow network's generic network kernel in the background (once per
#: dtype, activation set and output, whatever the widths; cached after). Measured 9-11 s on
#: a quiet core of the project's machine.
NUMBA_COMPILE_NETWORK_S = 10.0
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
    "auto chooses per job, at ma.fit: estimated time = start-up + steps x step time for each "
    "backend that starts here;",
    "numpy starts at once; numba pays ~0.35 s to load its kernels, runs NumPy-speed steps "
    "while a shape's kernels compile in the background the first time (the on-disk cache is "
    "checked), then runs narrow networks (layers <= 64 wide) several times faster; cupy pays "
    "~1.5 s to start the GPU;",
    f"a backend other than numpy must save >= {MIN_GAIN:.0%} and >= {MIN_SAVING_S} s; "
    "MLP(backend='auto').backend_choice says what was chosen and why.",
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
    """

    widths: tuple[int, ...]
    dtype: str = "float32"
    rows: int | None = None
    epochs: int = 1
    batch_size: int | None = None

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
    #: Numba lost only for want of compiled kernels: once compiled it would win this job, so
    #: the caller may compile them in the background for the next run.
    compile_numba: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _flops_and_units(widths: tuple[int, ...]) -> tuple[float, float, int]:
    pairs = list(zip(widths[:-1], widths[1:]))
    flops = 6.0 * sum(a * b for a, b in pairs)  # forward 2, backward 4 per weight
    units = float(sum(widths[1:]))
    return flops, units, len(pairs)


def estimate_seconds(
    name: str,
    job: Job,
    *,
    numba_fused_cached: bool = True,
    numba_generic_cached: bool = True,
) -> float:
    """Estimated seconds for ``job`` on backend ``name``, start-up included.

    Parameters
    ----------
    name : {"numpy", "numba", "cupy"}
    job : Job
    numba_fused_cached, numba_generic_cached : bool
        Whether the Numba kernels the job runs are compiled already (in memory or on disk).
    """
    flops, units, layers = _flops_and_units(job.widths)
    double = job.dtype == "float64"
    gemm = 45e9 if double else 90e9  # one core's BLAS rate on products this size
    rows, steps = job.batch_rows, job.steps
    if name == "numpy":
        step = layers * 25e-6 + rows * (flops / gemm + units * 3e-9 + layers * 15e-9)
        return steps * step
    if name == "numba":
        return _numba_seconds(job, numba_fused_cached, numba_generic_cached)
    if name == "cupy":
        step = layers * 60e-6 + rows * (flops / (10e12 if double else 40e12) + units * 1e-11)
        return CUPY_START_S + steps * step
    raise ValueError(f"no cost model for backend {name!r}; known: numpy, numba, cupy")


def _numba_seconds(job: Job, fused_cached: bool, generic_cached: bool) -> float:
    """Numba never stalls on a compile: until a kernel is loaded a step runs NumPy's code (or,
    for a narrow network, the per-layer kernels), while a child process compiles it beside the
    training. So a cold start costs the slower steps run meanwhile, not a wait."""
    flops, units, layers = _flops_and_units(job.widths)
    double = job.dtype == "float64"
    rows, steps = job.batch_rows, job.steps
    slow_step = estimate_seconds("numpy", job) / steps
    if job.narrow:
        fast_step = 15e-6 + rows * flops / (9e9 if double else 12e9)
        # A network kernel (the generic one, whatever the widths, or one specialized on the
        # shape) is asked for at once and compiles in the background when not cached.
        cold = 0.0 if fused_cached else NUMBA_COMPILE_NETWORK_S
        if not generic_cached:
            cold = max(cold, NUMBA_COMPILE_GENERIC_S)
    else:
        gemm = 45e9 if double else 90e9
        fast_step = layers * 20e-6 + rows * (flops / gemm + units * 2e-9 + layers * 8e-9)
        cold = 0.0 if generic_cached else NUMBA_COMPILE_GENERIC_S
    slow_steps = min(steps, math.ceil(cold / slow_step)) if cold else 0
    return NUMBA_IMPORT_S + slow_steps * slow_step + (steps - slow_steps) * fast_step


def choose_backend(
    job: Job | None,
    available: Iterable[str],
    *,
    numba_fused_cached: bool = True,
    numba_generic_cached: bool = True,
) -> BackendChoice:
    """The backend for ``job`` among ``available``: a pure function of its inputs.

    Parameters
    ----------
    job : Job or None
        ``None`` when no job is known yet (a model built, not yet fitted): NumPy, which
        starts at once, until :func:`mlp_accel.fit` knows the rows and epochs.
    available : iterable of str
        Backends that start here.
    numba_fused_cached, numba_generic_cached : bool
        Whether the Numba kernels the job needs are compiled already.

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
    estimates = {
        n: estimate_seconds(
            n,
            job,
            numba_fused_cached=numba_fused_cached,
            numba_generic_cached=numba_generic_cached,
        )
        for n in names
    }
    best = min(names, key=lambda n: (estimates[n], n != fallback))
    if best != fallback and fallback == "numpy":
        base = estimates["numpy"]
        saving = base - estimates[best]
        if saving < MIN_GAIN * base or saving < MIN_SAVING_S:
            best = "numpy"
    compile_numba = False
    if best == "numpy" and "numba" in names and not (numba_fused_cached and numba_generic_cached):
        warm = estimate_seconds("numba", job)
        saving = estimates["numpy"] - warm
        compile_numba = saving >= MIN_GAIN * estimates["numpy"] and saving >= MIN_SAVING_S
    compiled = ""
    if "numba" in names:
        if job.narrow:
            compiled = "numba kernels for this shape " + (
                "cached" if numba_fused_cached else "not compiled yet"
            )
        else:
            compiled = "numba kernels " + ("cached" if numba_generic_cached else "not compiled yet")
    rows = "unknown" if job.rows is None else f"{job.rows:,}"
    shown = ", ".join(f"{n} {estimates[n]:.3g} s" for n in sorted(estimates, key=estimates.get))
    reason = (
        f"estimated {shown} for {'-'.join(map(str, job.widths))} {job.dtype}, "
        f"{rows} rows x {job.epochs} epochs ({job.steps:,} steps)"
        + (f"; {compiled}" if compiled else "")
        + ("; numba would win once compiled: compiling for the next run" if compile_numba else "")
    )
    return BackendChoice(best, reason, estimates, compile_numba)


# -- what Numba has compiled ----------------------------------------------------------------


def numba_kernels_cached(spec: NetworkSpec) -> tuple[bool, bool]:
    """``(fused, generic)``: whether the Numba kernels a model of ``spec`` runs are compiled,
    in this process or in the on-disk cache. Never imports numba.

    ``fused`` is about a whole-network kernel for the shape: the generic one of its dtype,
    activations and loss, or one specialized on it (always True for a wide network, which
    has none); ``generic`` about the per-layer and optimizer kernels.
    """
    import sys

    fused_mem = generic_mem = False
    backend_module = sys.modules.get("mlp_accel.backends.numba_backend")
    if backend_module is not None:
        from . import _instances

        backend = _instances.get(("numba", ()))
        if backend is not None:
            fused_mem = spec in getattr(backend, "_networks", {})
            kernels = sys.modules.get("mlp_accel.backends._numba_kernels")
            adam = getattr(kernels, "adam_update", None)
            generic_mem = bool(getattr(adam, "signatures", None))

    generic = generic_mem or _generic_on_disk(spec)
    if max(spec.widths) > NARROW_MAX_WIDTH:
        return True, generic
    return fused_mem or _fused_on_disk(spec) or _generic_network_on_disk(spec), generic


def _generic_on_disk(spec: NetworkSpec) -> bool:
    """The optimizer kernels in Numba's cache, and the layer kernels of every activation of
    ``spec`` in the generated-module cache (read-only: nothing is created or imported)."""
    if not _indexed(Path(__file__).resolve().parent, "_numba_kernels.adam_update"):
        return False
    return all(_layer_module_on_disk(name, spec.dtype) for name in set(spec.activations))


def _layer_module_on_disk(activation: str, dtype: str) -> bool:
    # A generated layer module names its activation in its first line and its dtype after.
    marker, dtype_line = f"for the {activation!r} layer kernels", f"DT = np.{dtype}"
    return _generated_on_disk(
        "mlp_accel_layer_", lambda head: marker in head[0] and dtype_line in head, "dense_forward"
    )


def _generic_network_on_disk(spec: NetworkSpec) -> bool:
    # A generic network module names its key (dtype, activation set, loss, output) first.
    title = generic_title(*generic_key(spec))
    return _generated_on_disk("mlp_accel_generic_", lambda head: title in head[0], "train_")


def _fused_on_disk(spec: NetworkSpec) -> bool:
    # A generated network module names its spec in its first line.
    header = repr(spec)
    return _generated_on_disk("mlp_accel_fused_", lambda head: header in head[0], "train_")


def _generated_on_disk(prefix: str, matches: Callable[[list[str]], bool], kernel: str) -> bool:
    """Whether a generated module ``prefix*.py`` whose first lines ``matches`` has Numba's
    cache of a ``kernel*`` function beside it (read-only: nothing is created or imported)."""
    directory = cache_dir_candidate()
    try:
        candidates = list(directory.glob(f"{prefix}*.py"))
    except OSError:
        return False
    for path in candidates:
        try:
            head = path.read_text().split("\n", 8)
        except OSError:
            continue
        if matches(head) and _indexed(directory, f"{path.stem}.{kernel}"):
            return True
    return False


def _indexed(source_dir: Path, stem: str) -> bool:
    """Whether Numba's cache holds an index file ``stem*.nbi`` for a function of a file in
    ``source_dir``, wherever Numba put it (``$NUMBA_CACHE_DIR`` or beside the file)."""
    for directory in numba_index_dirs(source_dir):
        try:
            if any(directory.glob(f"{stem}*.nbi")):
                return True
        except OSError:
            continue
    return False
