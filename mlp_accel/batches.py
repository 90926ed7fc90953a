"""Where training batches come from: device-resident arrays, memory-mapped files, iterables.

- In-memory arrays are validated and moved to the device once; each epoch they are permuted on
  the device and cut into contiguous batches.
- Memory-mapped arrays (``np.load(path, mmap_mode="r")``) are never read whole: each epoch the
  rows are visited in shuffled blocks of ``batch_size`` contiguous rows (contiguous reads are
  fast on disk), rows are shuffled within the block, and each block is validated, converted
  once to the model's dtype and moved to the device.
- Any re-iterable of ``(X, y)`` batches is validated and moved batch by batch, in its order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ._validation import nonfinite_kind
from .training.step import TrainingStep

__all__ = ["Batch", "BatchSource", "ScaledRows", "make_source", "check_sample_weight"]

Array = Any


class Batch(NamedTuple):
    """One step's data as a source yields it.

    ``X``, ``y`` and ``sample_weight`` are what the source's step (:meth:`BatchSource.make_step`)
    takes: device arrays for local sources; ``rows`` is the batch's number of rows.
    """

    X: Array
    y: Array
    sample_weight: Array | None
    rows: int


class BatchSource(ABC):
    """Where :func:`~mlp_accel.fit` gets its batches from, one epoch at a time.

    Every data source (device arrays, memory maps, iterables, a Dask cluster) implements this
    one interface, so the training loop never asks what kind of source it holds.
    """

    #: Number of rows, or None where unknown until an epoch has run (iterables).
    n_rows: int | None = None
    #: Sum of the sample weights, or None without weights.
    weight_total: float | None = None

    @abstractmethod
    def epoch(
        self, rng: np.random.Generator, batch_size: int | None, shuffle: bool
    ) -> Iterator[Batch]:
        """The batches of one epoch, drawn with ``rng``."""

    def make_step(self, model: Any, optimizer: Any, **options: Any) -> TrainingStep:
        """The step that trains ``model`` on this source's batches (``options``: those of
        :class:`~mlp_accel.training.TrainingStep`)."""
        return TrainingStep(model, optimizer, **options)

    def epoch_stats(self) -> dict[str, float]:
        """Extra per-epoch records for the history (none by default)."""
        return {}

    def close(self) -> None:
        """Release what the source holds (nothing by default)."""
        return None


class DeviceSource(BatchSource):
    """Arrays moved to the device once; with ``sample_weight`` it yields ``(X, y, w)``."""

    def __init__(self, model: Any, X: Any, y: Any, sample_weight: Any = None) -> None:
        self.model = model
        self.X, self.y = model.prepare(X, y)
        self.n_rows = self.X.shape[0]
        self.w = None
        if sample_weight is not None:
            w = check_sample_weight(sample_weight, self.n_rows)
            self.w, self.weight_total = model.backend.asarray(w, model.dtype), float(w.sum())

    def epoch(self, rng, batch_size, shuffle):
        backend, n = self.model.backend, self.n_rows
        bs = n if batch_size is None else min(batch_size, n)
        X, y, w = self.X, self.y, self.w
        if shuffle and bs < n:
            order = backend.index_array(rng.permutation(n))
            X, y = backend.take_rows(X, order), backend.take_rows(y, order)
            if w is not None:
                w = backend.take_rows(w, order)
        for start in range(0, n, bs):
            stop = min(start + bs, n)  # the standard leaves out-of-range slice stops undefined
            part = None if w is None else w[start:stop]
            yield Batch(X[start:stop, :], y[start:stop, :], part, stop - start)


class BlockSource(BatchSource):
    """Host arrays too large to copy: read, validate and transfer one block at a time."""

    def __init__(self, model: Any, X: Any, y: Any) -> None:
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if y is None or len(y) != X.shape[0]:
            raise ValueError(
                f"X and y have different numbers of samples: X has {X.shape[0]}, "
                f"y has {None if y is None else len(y)}"
            )
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) in X")
        self.model, self.X, self.y = model, X, y
        self.n_rows = X.shape[0]

    def epoch(self, rng, batch_size, shuffle):
        blocks = self._host_blocks(rng, batch_size, shuffle)
        for X, y in self.model.backend.stream_to_device(blocks, self.model.dtype):
            yield Batch(X, y, None, X.shape[0])

    def _host_blocks(self, rng, batch_size, shuffle):
        n = self.n_rows
        bs = n if batch_size is None else min(batch_size, n)
        starts = np.arange(0, n, bs)
        if shuffle:
            starts = rng.permutation(starts)
        for start in starts:
            stop = min(int(start) + bs, n)
            Xb, yb = np.asarray(self.X[start:stop]), np.asarray(self.y[start:stop])
            if shuffle:
                within = rng.permutation(stop - int(start))
                Xb, yb = Xb[within], yb[within]
            yield self.model.prepare_host(Xb, yb)


class IterableSource(BatchSource):
    """A re-iterable of host ``(X, y)`` batches, validated and moved batch by batch."""

    def __init__(self, model: Any, batches: Iterable[tuple[Any, Any]]) -> None:
        self.model, self.batches = model, batches

    def epoch(self, rng, batch_size, shuffle):
        for X, y in self.model.backend.stream_to_device(self._host_batches(), self.model.dtype):
            yield Batch(X, y, None, X.shape[0])

    def _host_batches(self):
        count = 0
        for item in self.batches:
            try:
                Xb, yb = item
            except (TypeError, ValueError):
                raise TypeError("an iterable of batches must yield (X, y) pairs") from None
            Xh, yh = self.model.prepare_host(Xb, yb)
            count += Xh.shape[0]
            yield Xh, yh
        if count == 0:
            raise ValueError("the iterable of batches yielded no data")
        self.n_rows = count


class ScaledRows:
    """A lazily read table with a per-column affine map: rows come back as
    ``(table[rows] - mean) / scale``. Lets a memory map be standardized batch by batch."""

    def __init__(self, table: Any, mean: np.ndarray, scale: np.ndarray) -> None:
        self.table, self.mean, self.scale = table, np.asarray(mean), np.asarray(scale)
        self.shape, self.ndim = table.shape, table.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        raw = np.asarray(self.table[rows], dtype=np.float64)
        # Checked before scaling: inf - mean is inf, but statistics computed over an inf are
        # inf or NaN themselves, and the scaled rows would then report NaN for an inf.
        bad = nonfinite_kind(raw)
        if bad is not None:
            raise ValueError(f"the rows read from the table contain {bad}")
        scaled = (raw - self.mean) / self.scale
        if nonfinite_kind(scaled) is not None:
            raise ValueError(
                "the standardization statistics are not finite (the rows they were computed "
                f"from contain {nonfinite_kind(np.stack([self.mean, self.scale]))})"
            )
        return scaled


def _is_lazy_table(X: Any) -> bool:
    """Tables read by slices rather than loaded: memory maps, :class:`ScaledRows`, and
    h5py or zarr datasets."""
    module = type(X).__module__.split(".")[0]
    return isinstance(X, (np.memmap, ScaledRows)) or module in ("h5py", "zarr")


def _looks_like_batches(X: Any) -> bool:
    """An iterable of (X, y) pairs, as opposed to an array or a list of rows."""
    if hasattr(X, "shape") or not isinstance(X, Iterable):
        return False
    if isinstance(X, (list, tuple)):
        first = X[0] if len(X) else None
        return isinstance(first, tuple) and len(first) == 2 and hasattr(first[0], "__len__")
    return True


def check_sample_weight(sample_weight: Any, n_rows: int) -> np.ndarray:
    """Return per-row weights as a float64 vector: finite, non-negative, not all zero.

    Raises
    ------
    ValueError
        Wrong length or shape, NaN or inf, negative weights, or weights that sum to zero.
    """
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), got {w.shape}")
    bad = nonfinite_kind(w)
    if bad is not None:
        raise ValueError(f"sample_weight contains {bad}")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative")
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to zero: no sample would count")
    return w


def make_source(model: Any, X: Any, y: Any, epochs: int, sample_weight: Any = None) -> BatchSource:
    """Pick the source for ``X``: a memory map, an iterable of batches, or arrays.

    Raises
    ------
    ValueError
        An iterable given with ``y``, a one-shot iterator for several epochs, or
        ``sample_weight`` with anything but in-memory arrays.
    """
    lazy = _is_lazy_table(X) or _is_lazy_table(y)
    if sample_weight is not None and (lazy or _looks_like_batches(X)):
        raise ValueError(
            "sample_weight needs in-memory arrays X and y, not a memory map or an iterable "
            "of batches"
        )
    if lazy:
        return BlockSource(model, X, y)
    if _looks_like_batches(X):
        if y is not None:
            raise ValueError("pass y=None when X is an iterable of (X, y) batches")
        if iter(X) is X and epochs > 1:
            raise ValueError(
                "X is a one-shot iterator, but training runs several epochs: pass a list or "
                "another re-iterable of (X, y) batches"
            )
        return IterableSource(model, X)
    if y is None:
        raise ValueError("y is required when X is an array")
    return DeviceSource(model, X, y, sample_weight)
