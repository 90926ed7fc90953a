"""Data-parallel training on a Dask cluster (``ma.fit(..., client=client)``).

The training rows live on the workers as row chunks (a ``dask.array`` chunked by rows, or a
NumPy array that is split into one chunk per worker). Each optimizer step:

1. the driver broadcasts the current weights once to every worker (``client.scatter``);
2. every chunk that holds rows of the step's global batch runs one task on its worker: an
   :class:`~mlp_accel.model.MLP` of the same spec and backend (cached per worker process)
   computes the *summed* loss and gradients of those rows and their count;
3. the driver adds the partial sums, divides once by the global row count, applies the
   penalty, clipping and the optimizer, and keeps the new weights.

Batches are drawn with the model's generator exactly as single-process :func:`~mlp_accel.fit`
draws them, so the result equals single-process training to floating-point summation order.
The update is applied only after every shard has answered: a lost worker either has its tasks
recomputed by Dask (chunks built from a graph are recomputable) or makes the fit fail with a
:class:`RuntimeError` that names it; a missing shard is never averaged over.

With ``local_steps=k > 1`` (local SGD) each worker instead takes ``k`` optimizer steps on its
own rows of ``k`` consecutive batches, and the driver averages the weights and optimizer state
(weighted by rows). That saves communication but is **not** equal to single-machine training.

This module is imported only when a client is passed; ``import mlp_accel`` does not import dask.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import numpy as np

from ._dask_worker import (
    _chunk_gradients,
    _meta,
    _prepare_part,
    _unpack_local,
)
from .batches import Batch, BatchSource
from .training.step import TrainingStep

__all__ = ["DaskSource", "DaskStep", "SchedulerLostError", "WorkerLostError"]


#: Per-worker-process model cache, keyed by (layers, activations, loss, dtype, backend).
class WorkerLostError(RuntimeError):
    """A worker holding a shard of the step was lost; the model keeps its previous weights."""


class SchedulerLostError(RuntimeError):
    """The Dask scheduler was lost during a fit, and with it the chunks on the workers.

    The model keeps its previous weights, and the message names the last checkpoint's epoch.
    """


def _refuse_driver_tables(X: Any) -> None:
    """Refuse the tables read in blocks without a client.

    With one, they would be read whole on the driver and shipped from there.
    """
    from .batches import _is_lazy_table

    if _is_lazy_table(X):
        what = "a memory-mapped array" if isinstance(X, np.memmap) else f"a {type(X).__name__}"
        raise ValueError(
            f"X is {what}, which a Dask client would read whole on the driver: pass a dask "
            "array whose chunks the workers read themselves (e.g. dask.array.from_zarr)"
        )


def _check_known_rows(arr: Any, name: str) -> None:
    """Refuse a dask array whose row chunks have unknown (NaN) sizes.

    Rows are addressed by global index, so every chunk's size must be known.
    """
    if any(math.isnan(c) for c in arr.chunks[0]):
        raise ValueError(
            f"{name} is a dask array with unknown chunk sizes (from boolean indexing or a "
            f"dataframe's values, say): call {name}.compute_chunk_sizes() first, or make it "
            "with known sizes (DataFrame.to_dask_array(lengths=True))"
        )


class DaskSource(BatchSource):
    """A batch source whose rows live on Dask workers, with the matching step (:class:`DaskStep`).

    :func:`mlp_accel.fit` draws batches from :meth:`epoch` exactly as from in-memory data; a
    batch's ``X`` is its global rows (``(start, stop)``, an index array, or with local SGD a
    list of those), which :class:`DaskStep` sends to the workers that hold them.
    """

    #: Known from the start, unlike a stream's (``BatchSource.n_rows`` may be ``None``).
    n_rows: int

    def __init__(
        self, client: Any, model: Any, X: Any, y: Any, local_steps: int = 1, sample_weight=None
    ) -> None:
        import dask
        import dask.array as da

        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with a Dask client")
        if y is None:
            raise ValueError("y is required when training on a Dask client")
        if isinstance(local_steps, bool) or not isinstance(local_steps, int) or local_steps < 1:
            raise ValueError(f"local_steps must be a positive integer, got {local_steps!r}")
        self.client, self.model, self.local_steps = client, model, local_steps
        self.address = getattr(client.scheduler, "address", None)
        self.meta = _meta(model)
        workers = list(client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("the Dask cluster has no workers")
        self.workers = set(workers)
        _refuse_driver_tables(X)
        if not isinstance(X, da.Array):
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D, got shape {X.shape}")
            X = da.from_array(X, chunks=(max(1, -(-X.shape[0] // len(workers))), -1))
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        _check_known_rows(X, "X")
        X = X.rechunk({1: -1})
        if not isinstance(y, da.Array):
            y = da.from_array(np.asarray(y), chunks=-1)
        _check_known_rows(y, "y")
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and y have different numbers of samples: X has {X.shape[0]}, y has {y.shape[0]}"
            )
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) in X")
        y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
        xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
        prepare = dask.delayed(_prepare_part, pure=True)
        # Futures computed from the graph: Dask can recompute a chunk whose worker is lost.
        self.parts = client.compute(
            [prepare(self.meta, a, b, model.preprocessing) for a, b in zip(xs, ys)]
        )
        sizes = X.chunks[0]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_rows = int(X.shape[0])
        self._wait(self.parts)  # fail early on bad data; wait until the data is in place
        self._reset_stats()
        self._attempt = 0
        self.total = {"steps": 0, "compute": 0.0, "comm": 0.0, "bytes": 0}

    # -- batches ---------------------------------------------------------------------------
    def epoch(self, rng: np.random.Generator, batch_size: int | None, shuffle: bool):
        """Yield the epoch's batches as (chunk, rows) groups, drawn as ``DeviceSource`` draws."""
        n = self.n_rows
        bs = n if batch_size is None else min(batch_size, n)
        order = rng.permutation(n) if shuffle and bs < n else None  # as DeviceSource draws it
        group, count = [], 0
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            rows = (start, stop) if order is None else order[start:stop]
            if self.local_steps == 1:
                yield Batch(rows, None, None, stop - start)
                continue
            group.append(rows)
            count += stop - start
            if len(group) == self.local_steps:
                yield Batch(group, None, None, count)
                group, count = [], 0
        if group:
            yield Batch(group, None, None, count)

    def make_step(self, model: Any, optimizer: Any, **options: Any) -> DaskStep:
        """The step that runs on this source's workers."""
        return DaskStep(self, model, optimizer, **options)

    def _chunk_rows(self, rows: Any) -> list[tuple[int, Any]]:
        """``(chunk index, local rows)`` of every chunk that holds rows of a global batch."""
        out = []
        for c in range(len(self.parts)):
            lo, hi = int(self.offsets[c]), int(self.offsets[c + 1])
            if isinstance(rows, tuple):
                a, b = max(rows[0], lo), min(rows[1], hi)
                if a < b:
                    out.append((c, (a - lo, b - lo)))
            else:
                local = rows[(rows >= lo) & (rows < hi)] - lo
                if local.size:
                    out.append((c, local))
        return out

    # -- the step ----------------------------------------------------------------------------
    def _wait(self, futures: list[Any]) -> None:
        from distributed import wait

        wait(futures)
        for f in futures:
            if f.status == "error":
                self._gather([f])

    def _gather(self, futures: list[Any]) -> list[Any]:
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker
        from distributed.utils import CancelledError  # base of FutureCancelledError

        try:
            return self.client.gather(futures, errors="raise")
        except (KilledWorker, CommClosedError, CancelledError, OSError) as exc:
            if self.scheduler_gone():
                raise  # not a worker's loss: DaskStep reports the scheduler's
            try:
                now = set(self.client.scheduler_info()["workers"])
            except Exception:  # the scheduler may be gone too
                now = set()
            lost = sorted(self.workers - now)
            named = ", ".join(lost) if lost else str(getattr(exc, "last_worker", "unknown"))
            raise WorkerLostError(
                f"lost Dask worker(s) {named} during a training step "
                f"({type(exc).__name__}: {exc}); the model keeps the weights from before "
                "the step. Resume from the last checkpoint."
            ) from exc

    def _broadcast(self, obj: Any) -> Any:
        # One copy goes to one worker; the others fetch it peer to peer when their task needs
        # it. (broadcast=True would stall for the connect timeout on a worker just lost.)
        self._attempt += 1
        key = f"mlp-accel-{id(self)}-{self._attempt}"
        return self.client.scatter({key: obj}, hash=False)[key]

    def _with_retry(self, step: Any) -> Any:
        """Run a step; if a worker was lost, run it once more on the workers left.

        The chunks are recomputed from their graph; only a complete step updates the model.
        """
        try:
            return step()
        except WorkerLostError as first:
            now = set(self.client.scheduler_info()["workers"])
            if not now:
                raise
            self.workers = now
            try:
                return step()
            except WorkerLostError as second:
                raise second from first

    def scheduler_gone(self) -> bool:
        """Whether the scheduler no longer answers the client (asked only after a failure)."""
        client = self.client
        if client.status != "running":  # reconnecting or closed: the scheduler went away
            return True
        try:
            client.sync(client.scheduler.identity)
        except Exception:  # OSError, CommClosedError, a timeout: it does not answer
            return True
        return False

    # -- timing --------------------------------------------------------------------------------
    def _reset_stats(self) -> None:
        self.steps, self.compute, self.comm, self.bytes = 0, 0.0, 0.0, 0

    def _record(self, wall: float, compute: float, sent: int) -> None:
        self.steps += 1
        self.compute += min(compute, wall)
        self.comm += max(wall - compute, 0.0)
        self.bytes += sent

    def epoch_stats(self) -> dict[str, float]:
        """Return the epoch's seconds of compute and communication and bytes sent, then reset.

        Compute is the slowest worker's task time plus the driver's update; communication is
        the rest of the step's wall time.
        """
        stats = {
            "compute_time": self.compute,
            "comm_time": self.comm,
            "bytes_sent": float(self.bytes),
            "steps": float(self.steps),
        }
        self.total["steps"] += self.steps
        self.total["compute"] += self.compute
        self.total["comm"] += self.comm
        self.total["bytes"] += self.bytes
        self._reset_stats()
        return stats

    def close(self) -> None:
        """Release the chunks held on the workers."""
        for f in self.parts:
            f.release()
        self.parts = []


class DaskStep(TrainingStep):
    """One step of data-parallel training.

    Gradients are summed over the workers that hold the batch's rows, then the penalty,
    clipping and the update run here, as in :class:`TrainingStep`.
    """

    #: ``(path, epoch)`` of the last checkpoint written in this fit (set by its writer).
    last_checkpoint: tuple[str, int] | None = None

    def __init__(self, source: DaskSource, model: Any, optimizer: Any, **options: Any) -> None:
        super().__init__(model, optimizer, **options)
        self.source = source

    def __call__(self, rows: Any, y: Any = None, *, sample_weight: Any = None) -> float:
        """One step on the global ``rows`` of a :class:`DaskSource` batch."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with a Dask client")
        local = self.source.local_steps > 1
        run = functools.partial(self._local_sgd_step if local else self._step, rows)
        try:
            return self.source._with_retry(run)
        except Exception as exc:
            # Dask's own error depends on where the step was (a connect timeout, a closed
            # comm, a KeyError from the emptied scheduler info): one error says what happened.
            if not self.source.scheduler_gone():
                raise
            raise SchedulerLostError(self._scheduler_lost_message(exc)) from None

    def _scheduler_lost_message(self, exc: BaseException) -> str:
        if self.last_checkpoint is None:
            resume = "No checkpoint was written in this fit (checkpoint= makes one to resume from)."
        else:
            path, epoch = self.last_checkpoint
            resume = (
                f"The last checkpoint, {path}, holds epoch {epoch}: resume from it on a new "
                "cluster (fit(..., resume_from=...))."
            )
        return (
            f"lost the Dask scheduler {self.source.address or ''} during a training step "
            f"({type(exc).__name__}: {exc}); the model keeps the weights from before the "
            f"step. {resume}"
        )

    def _step(self, batch_rows: Any) -> Any:
        t0 = time.perf_counter()
        source, model = self.source, self.model
        backend = model.backend
        weights = model.get_weights()
        wf = source._broadcast(weights)
        futures = [
            source.client.submit(
                _chunk_gradients,
                source.meta,
                wf,
                source.parts[c],
                rows,
                self.accumulate,
                pure=False,
            )
            for c, rows in source._chunk_rows(batch_rows)
        ]
        results = source._gather(futures)
        t_update = time.perf_counter()
        n = sum(r[2] for r in results)
        loss_sum = math.fsum(r[0] for r in results)
        grads = [sum(r[1][k] for r in results) / n for k in range(len(weights))]
        grads = [backend.asarray(g, model.dtype) for g in grads]
        loss_sum, grads = self.regularize(loss_sum, grads, n)
        self.apply(grads)
        done = time.perf_counter()
        sent = sum(w.nbytes for w in weights) * len(source.workers)
        sent += sum(sum(g.nbytes for g in r[1]) for r in results)
        compute = max(r[3] for r in results) + (done - t_update)
        source._record(done - t0, compute, sent)
        return loss_sum

    def _local_sgd_step(self, groups: list[Any]) -> float:
        t0 = time.perf_counter()
        source, model, optimizer = self.source, self.model, self.optimizer
        backend = model.backend
        weights = model.get_weights()
        # The state's hyperparameters carry the rate of this step (a schedule may set it).
        state = optimizer.state_dict(backend)
        payload = source._broadcast((weights, state))
        per_chunk: dict[int, list[Any]] = {}
        for rows in groups:
            for c, local in source._chunk_rows(rows):
                per_chunk.setdefault(c, []).append(local)
        options = {"accumulate": self.accumulate, "alpha": self.alpha, "clip_norm": self.clip_norm}
        futures = [
            source.client.submit(
                _unpack_local, source.meta, payload, source.parts[c], lists, options, pure=False
            )
            for c, lists in per_chunk.items()
        ]
        results = source._gather(futures)
        t_update = time.perf_counter()
        n = sum(r[3] for r in results)
        new = [sum(r[1][k] * r[3] for r in results) / n for k in range(len(weights))]
        arrays = {
            key: sum(r[2]["arrays"][key] * r[3] for r in results) / n
            for key in results[0][2]["arrays"]
        }
        merged = dict(results[0][2], arrays=arrays, t=max(r[2]["t"] for r in results))
        model.set_params([backend.asarray(w, model.dtype) for w in new])
        # Loading state leaves the rate as it is (the rate is not state).
        optimizer.load_state_dict(merged, backend)
        done = time.perf_counter()
        sent = sum(w.nbytes for w in weights) * len(source.workers) * 2
        compute = max(r[4] for r in results) + (done - t_update)
        source._record(done - t0, compute, sent)
        return sum(r[0] for r in results)
