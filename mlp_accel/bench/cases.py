"""The benchmark cases and the library's measured steps.

A case is a network shape at a batch size. Each measured step is a zero-argument callable
built here once and timed by pytest-benchmark (``benchmarks/``) or by
:func:`mlp_accel.bench.timing.time_interleaved` (``mlp-accel bench``). Every backend runs the
one :class:`~mlp_accel.model.MLP` class; only the backend differs. Data goes to the device
before timing, and every call synchronizes the device before it returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..model import MLP
from ..optim import Adam

Array = Any
DTYPES: tuple[str, ...] = ("float32", "float64")
#: Adam's learning rate in every implementation (the library, the reference, the peers).
LEARNING_RATE = 1e-3


# -- what is measured -----------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """A benchmark case: network widths, batch size, activations and loss.

    ``family`` groups shapes with the same network (the batch-size sweep varies the batch of
    a family); ``gpu_only`` cases run only on a device with the memory for them; on
    ``gemm_bound`` cases the suite reports the fraction of the GEMM rate a step reaches.
    """

    name: str
    family: str
    layers: tuple[int, ...]
    batch: int
    activations: tuple[str, ...]
    loss: str
    gpu_only: bool = False
    gemm_bound: bool = False

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds of one forward pass per sample: ``sum(n_in * n_out)``."""
        return sum(a * b for a, b in zip(self.layers[:-1], self.layers[1:]))

    def train_flops(self, batch: int | None = None) -> float:
        """Floating-point operations of a training step: about ``6 * batch * sum(n_in n_out)``.

        Forward is one GEMM per layer (2 flops per multiply-add), backward two (dW and
        dL/da), so 3 x 2 = 6; elementwise work and the optimizer are left out.
        """
        return 6.0 * (self.batch if batch is None else batch) * self.macs_per_sample

    def infer_flops(self, batch: int | None = None) -> float:
        """Floating-point operations of a forward pass: about ``2 * batch * sum(n_in n_out)``."""
        return 2.0 * (self.batch if batch is None else batch) * self.macs_per_sample

    def minimum_train_bytes(self, dtype: str) -> int:
        """The least memory a training step with Adam needs: weights, gradients and the two
        Adam moments (4 copies of the parameters), plus the batch and its targets, and each
        layer's pre-activation and activation (kept for the backward pass)."""
        params = sum(a * b + b for a, b in zip(self.layers[:-1], self.layers[1:]))
        per_row = self.layers[0] + self.layers[-1] + 2 * sum(self.layers[1:])
        return (4 * params + self.batch * per_row) * (4 if dtype == "float32" else 8)

    def with_batch(self, batch: int) -> Shape:
        """The same network at another batch size."""
        return replace(self, name=f"{self.family}-{batch}", batch=batch, gpu_only=False)


_TUTORIAL = dict(family="tutorial", layers=(2, 4, 3, 1), activations=("relu", "relu", "sigmoid"))
_MLP256 = dict(family="mlp256", layers=(64, 256, 256, 10), activations=("relu", "relu", "softmax"))
_MNIST = dict(family="mnist", layers=(784, 1024, 1024, 10), activations=("relu", "relu", "softmax"))

#: The suite's cases, by name. The tutorial network is the seed tutorial's 2-4-3-1 on
#: circles-like data; the wider two are classifiers on 10 classes.
SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("tutorial-1k", batch=1_000, loss="binary_cross_entropy", **_TUTORIAL),
        Shape("tutorial-100k", batch=100_000, loss="binary_cross_entropy", **_TUTORIAL),
        Shape("mlp256-1024", batch=1_024, loss="cross_entropy", gemm_bound=True, **_MLP256),
        Shape("mnist-4096", batch=4_096, loss="cross_entropy", gemm_bound=True, **_MNIST),
        Shape(
            "mnist-65536",
            batch=65_536,
            loss="cross_entropy",
            gemm_bound=True,
            gpu_only=True,
            **_MNIST,
        ),
    )
}


def network_shape(layers: Sequence[int], batch: int) -> Shape:
    """The user's network as a bench case (``mlp-accel bench --layers ... --batch-size ...``).

    Hidden layers are ReLU, as in the suite's cases; one output unit is a sigmoid with binary
    cross-entropy, several a softmax with cross-entropy (the output layer's activation and
    loss cost little beside the matrix products).

    Raises
    ------
    ValueError
        Fewer than two widths, or a width or batch size below 1.
    """
    widths = tuple(int(w) for w in layers)
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"layers must be at least two positive widths, got {list(layers)}")
    if isinstance(batch, bool) or int(batch) < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch!r}")
    single = widths[-1] == 1
    name = "-".join(map(str, widths))
    return Shape(
        f"{name}@{int(batch)}",
        family=name,
        layers=widths,
        batch=int(batch),
        activations=("relu",) * (len(widths) - 2) + ("sigmoid" if single else "softmax",),
        loss="binary_cross_entropy" if single else "cross_entropy",
        # %GEMM is worth reading once the products dominate the elementwise work.
        gemm_bound=sum(a * b for a, b in zip(widths[:-1], widths[1:])) >= 4096,
    )


#: ``--quick`` leaves out mnist-4096 (seconds per step on a small CPU); name it to add it.
QUICK_SHAPES: tuple[str, ...] = ("tutorial-1k", "tutorial-100k", "mlp256-1024", "mnist-65536")

#: Networks of the batch-size sweep (each at batches 2^6 .. 2^17).
SWEEP_FAMILIES: dict[str, Shape] = {
    "tutorial": SHAPES["tutorial-1k"],
    "mlp256": SHAPES["mlp256-1024"],
}


def sweep_batches(quick: bool = False) -> list[int]:
    """Batch sizes of the sweep: 2^6 .. 2^17, or 2^6 .. 2^15 with ``quick``."""
    return [2**k for k in range(6, (15 if quick else 17) + 1)]


@dataclass
class HostData:
    """A batch on the host: inputs, targets shaped like the output layer, integer labels."""

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray


def host_data(shape: Shape, dtype: str, seed: int = 0) -> HostData:
    """Random inputs and labels for ``shape`` (standard normal inputs, uniform classes).

    Throughput does not depend on the values, only on shapes and dtype, so random data keeps
    the suite free of downloads; the same seed gives every implementation the same batch.
    """
    rng = np.random.default_rng(seed)
    n, n_in, n_out = shape.batch, shape.layers[0], shape.layers[-1]
    X = rng.standard_normal((n, n_in)).astype(dtype)
    if shape.loss == "cross_entropy":
        labels = rng.integers(0, n_out, size=n)
        Y = np.zeros((n, n_out), dtype=dtype)
        Y[np.arange(n), labels] = 1.0
    elif shape.loss == "binary_cross_entropy":
        labels = rng.integers(0, 2, size=n)
        Y = labels.reshape(n, 1).astype(dtype)
    else:
        Y = rng.standard_normal((n, n_out)).astype(dtype)
        labels = np.zeros(n, dtype=np.int64)
    return HostData(X, Y, labels)


# -- the library's steps -------------------------------------------------------------------
@dataclass
class Workload:
    """One model on one backend with its batch on the device, built outside any timing."""

    backend: Backend
    shape: Shape
    dtype: str
    model: MLP
    optimizer: Adam
    X: Array
    Y: Array

    def rows(self, n: int) -> tuple[Array, Array]:
        """The first ``n`` rows of the device batch (views: no copy, no transfer)."""
        return self.X[:n, :], self.Y[:n, :]


def make_workload(
    backend: str | Backend, shape: Shape, dtype: str, seed: int = 0, data: HostData | None = None
) -> Workload:
    """Build the model and move its batch to the device; warm up the backend's kernels.

    The model is an :class:`~mlp_accel.model.MLP` like any user's; the backend is the only
    thing that changes between workloads. It runs the kernel tier a long training run of the
    shape runs (the steady state the bench measures), pinned so that the bench's short
    ``ma.fit`` calls run it too.
    """
    backend = _long_run_tier(get_backend(backend), shape, dtype)
    data = host_data(shape, dtype, seed) if data is None else data
    model = MLP(
        shape.layers, shape.activations, shape.loss, backend=backend, dtype=dtype, seed=seed
    )
    X, Y = model.prepare(data.X, data.Y)
    backend.warmup(model.spec)
    backend.synchronize()
    return Workload(backend, shape, dtype, model, Adam(LEARNING_RATE), X, Y)


def _long_run_tier(backend: Backend, shape: Shape, dtype: str) -> Backend:
    """``backend`` pinned to the kernel tier a long run of ``shape`` chooses, where it has
    tiers to choose from (numba)."""
    from ..backends import BACKEND_OPTIONS
    from ..backends._auto import Job
    from ..backends.base import NetworkSpec

    if "tier" not in BACKEND_OPTIONS.get(backend.name, ()) or getattr(backend, "tier", None):
        return backend
    spec = NetworkSpec(tuple(shape.layers), tuple(shape.activations), shape.loss, dtype)
    job = Job(tuple(shape.layers), dtype, shape.batch, 10**6, shape.batch)
    return get_backend(backend.name, tier=backend.choose_tier(spec, job)[0])


def train_call(
    work: Workload, batch: int | None = None, *, synchronize: bool = True
) -> Callable[[], None]:
    """One :meth:`MLP.train_step` (forward, backward, Adam update) on the device batch.

    With ``synchronize=False`` the call only launches the step: the caller synchronizes
    around a block of calls (``syncs`` of :func:`~mlp_accel.bench.time_interleaved_stats`),
    so that, as in training, the host queues the next step while the device runs this one.
    """
    model, optimizer = work.model, work.optimizer
    sync = work.backend.synchronize if synchronize else _nothing
    X, Y = work.rows(work.shape.batch if batch is None else batch)

    def call() -> None:
        model.train_step(X, Y, optimizer)
        sync()

    return call


def _nothing() -> None:
    """The synchronization of a call that leaves it to its caller."""


def infer_call(work: Workload, batch: int | None = None) -> Callable[[], None]:
    """One forward pass (:meth:`MLP.forward_device`) on the device batch."""
    model, sync = work.model, work.backend.synchronize
    X, _ = work.rows(work.shape.batch if batch is None else batch)

    def call() -> None:
        model.forward_device(X)
        sync()

    return call


def fit_epochs(step_seconds: float, target: float = 0.05) -> int:
    """Epochs per :func:`fit_call` so that a call lasts about ``target`` seconds (1 to 50).

    ``fit`` checks its inputs once per call; enough epochs per call amortize that the way a
    real training run does, so fit/s measures the per-epoch cost of the training loop.
    """
    return max(1, min(50, math.ceil(target / max(step_seconds, 1e-9))))


def fit_call(work: Workload, epochs: int) -> Callable[[], None]:
    """One :func:`mlp_accel.fit` call of ``epochs`` full-batch epochs (no shuffling).

    This is the public training API as a user calls it, with its per-call input checks and
    its per-epoch bookkeeping (snapshot for divergence recovery, loss read back). A call
    processes ``epochs * batch`` samples.
    """
    from ..train import fit

    model, optimizer, sync = work.model, work.optimizer, work.backend.synchronize
    X, Y = work.X, work.Y

    def call() -> None:
        fit(model, X, Y, epochs=epochs, optimizer=optimizer, shuffle=False)
        sync()

    return call


def with_generic_hooks(backend: Backend, *hooks: str) -> Backend:
    """A new backend of ``backend``'s class whose ``hooks`` fall back to :class:`Backend`'s.

    To time what a backend's override of a hook buys, beside the same backend without it:
    ``"fused_network"`` gives the layer-by-layer path instead of a whole-network kernel,
    ``"stream_to_device"`` the generic one-batch-at-a-time copy instead of overlapped ones.
    The new backend is started with its class's defaults, and shares no cache with
    ``backend`` (nothing the original has compiled or chosen leaks into it).

    Raises
    ------
    ValueError
        A name that is not a public hook of :class:`Backend`.
    """
    for hook in hooks:
        if hook.startswith("_") or not callable(getattr(Backend, hook, None)):
            raise ValueError(f"{hook!r} is not a hook of Backend")
    cls = type(backend)
    generic = {hook: getattr(Backend, hook) for hook in hooks}
    return type(f"Generic{cls.__name__}", (cls,), generic)()


def gemm_call(backend: Backend, dtype: str, n: int) -> tuple[Callable[[], None], float]:
    """``A @ B`` for square ``n x n`` operands with the backend's ``xp``; returns (call, flops)."""
    rng = np.random.default_rng(0)
    A = backend.asarray(rng.standard_normal((n, n)), dtype)
    B = backend.asarray(rng.standard_normal((n, n)), dtype)
    sync = backend.synchronize

    def call() -> None:
        A @ B
        sync()

    return call, 2.0 * n**3


def write_table(
    path: str | os.PathLike,
    rows: int,
    features: int,
    classes: int = 2,
    *,
    seed: int = 0,
    chunk_rows: int = 100_000,
) -> None:
    """Write a float32 ``.npy`` table of ``features`` columns and a label column, in chunks.

    A dataset for training from a memory map (``np.load(path, mmap_mode="r")``, then
    ``X, y = data[:, :-1], data[:, -1]``) that need not fit in memory: it is written
    ``chunk_rows`` rows at a time. Features are standard normal; the label of a row is the
    class (``0 .. classes - 1``) of a fixed random linear rule, so that a model can learn it
    and its loss falls.

    Raises
    ------
    ValueError
        ``rows``, ``features`` or ``chunk_rows`` below 1, or ``classes`` below 2.
    """
    if min(rows, features, chunk_rows) < 1 or classes < 2:
        raise ValueError(
            f"write_table needs rows, features, chunk_rows >= 1 and classes >= 2; got rows="
            f"{rows}, features={features}, chunk_rows={chunk_rows}, classes={classes}"
        )
    rng = np.random.default_rng(seed)
    rule = rng.standard_normal((features, classes)).astype(np.float32)
    table = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features + 1))
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        X = rng.standard_normal((stop - start, features), dtype=np.float32)
        table[start:stop, :-1] = X
        table[start:stop, -1] = np.argmax(X @ rule, axis=1)
    table.flush()
    del table
