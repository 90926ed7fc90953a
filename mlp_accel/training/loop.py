"""The minibatch training loop (:func:`fit`): batches, schedules, divergence checks,
validation, history, callbacks and checkpoints.

Losses stay on the device until the end of the epoch, so a GPU is synchronized once per
epoch, not once per step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validation import check_count, check_real
from ..batches import BatchSource, make_source
from ..io import load_checkpoint
from ..model import MLP
from ..ops.table import CLASSIFICATION_LOSSES
from ..optim import Adam, Optimizer, get_optimizer
from ..schedules import Schedule
from .callback_states import CallbackStates, split_hooks
from .hooks import CheckpointWriter, ProgressBar
from .plan import plan_fit, update_rule
from .resume import NOT_GIVEN, NotGiven, RunSettings, resume, run_options, schedule_spec
from .step import TrainingStep

__all__ = ["fit", "History", "TrainingDivergedError", "accuracy_device"]

Array = Any
CallbackLike = Callable[[int, dict[str, float]], Any] | Any


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the model keeps its last finite weights."""


class History(dict):
    """Per-epoch records of a :func:`fit` run, as lists keyed by metric name.

    Keys: ``epoch``, ``loss`` (mean training loss of the epoch's steps, with the L2 penalty if
    any), ``lr`` (at the end of the epoch), ``time`` (seconds), ``samples_per_sec``, and with
    validation data ``val_loss`` and, for classification, ``val_accuracy``.

    :attr:`code_path` says which backend and kernel tier the fit ran, and why.
    """

    #: ``{"backend", "tier", "reason"}`` of the fit (see :meth:`mlp_accel.MLP.plan_fit`).
    code_path: dict[str, str] | None = None

    @property
    def n_epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.get("loss", []))

    @property
    def wall_time(self) -> float:
        """Seconds spent in the epochs, summed."""
        return float(sum(self.get("time", [])))

    def append(self, **logs: float) -> None:
        """Record one epoch."""
        for key, value in logs.items():
            self.setdefault(key, []).append(value)


def accuracy_device(model: MLP, X: Array, y: Array) -> float:
    """Classification accuracy on device data (one-hot or 0/1 targets)."""
    xp = model.backend.xp
    out = model.forward_device(X)
    if model.activations[-1] == "softmax":
        hits = xp.argmax(out, axis=1) == xp.argmax(y, axis=1)
    else:
        hits = (out > 0.5) == (y > 0.5)
    return float(model.backend.to_numpy(xp.mean(xp.astype(hits, out.dtype))))


def _all_finite(model: MLP) -> bool:
    """Whether every parameter is finite, from one sum per array and one device sync.

    NaN and inf propagate through a sum, so a finite total means finite weights; a total
    that overflows from finite weights (magnitudes near the dtype's maximum) counts as
    diverged too. Cheaper than an ``isfinite`` mask per array, which matters when an epoch
    is one step of a small network.
    """
    params = model.params
    if all(type(p) is np.ndarray for p in params):
        # Host arrays: the ufunc's reduce directly, without np.sum's dispatch (which cost
        # more than the whole step of a 1,000-row epoch of a small network).
        with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf: a NaN, no warning
            return math.isfinite(sum(float(np.add.reduce(p, axis=None)) for p in params))
    xp = model.backend.xp
    total = None
    for p in params:
        part = xp.sum(p)
        total = part if total is None else total + part
    return math.isfinite(float(model.backend.to_numpy(total)))


def _optimizer_snapshot(optimizer: Optimizer, backend: Any) -> tuple[int, dict[str, Any]]:
    """Copies of the optimizer's step count and state arrays (a backend may update them in
    place), so that a diverged epoch can be undone whole."""
    state = {}
    for name in optimizer.state_names:
        arrays = getattr(optimizer, name)
        state[name] = None if arrays is None else [backend.copy(a) for a in arrays]
    return optimizer.t, state


def _restore_optimizer(optimizer: Optimizer, snapshot: tuple[int, dict[str, Any]]) -> None:
    optimizer.t, state = snapshot
    for name, arrays in state.items():
        setattr(optimizer, name, arrays)


def _row_count(X: Any, y: Any) -> int | None:
    """Training rows of in-memory or memory-mapped data; ``None`` for a stream of batches."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        try:
            return int(shape[0])
        except (TypeError, ValueError):  # a lazy array whose length is not known (dask: NaN)
            return None
    if y is not None and hasattr(X, "__len__"):
        return len(X)
    return None


def _checked_optimizer(optimizer: Optimizer | str | None) -> Optimizer | None:
    if isinstance(optimizer, str):
        return get_optimizer(optimizer)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            "optimizer must be an mlp_accel.optim.Optimizer or a name, got "
            f"{type(optimizer).__name__}"
        )
    return optimizer


def _checked_clip_norm(clip_norm: float | None) -> float | None:
    if clip_norm is None:
        return None
    clip_norm = check_real(clip_norm, "clip_norm", 0.0, low_open=True, allow_inf=True)
    # An infinite bound never clips; dividing by it would make every gradient NaN.
    return None if math.isinf(clip_norm) else clip_norm


def _open_source(
    model: MLP, X: Any, y: Any, epochs: int, sample_weight: Any, client: Any, local_steps: int
) -> BatchSource:
    if client is not None:
        # Imported only here: dask is an optional dependency.
        from ..distributed import DaskSource

        return DaskSource(client, model, X, y, local_steps, sample_weight)
    if local_steps != 1:
        raise ValueError("local_steps needs a Dask client")
    return make_source(model, X, y, epochs, sample_weight)


class _Rollback:
    """What a diverging epoch is undone to: copies of the weights and the optimizer's state,
    taken when the weights were last checked finite.

    The loss is checked after every epoch. Checking the weights and copying them with the
    optimizer's state costs about as much as a 1,000-row full-batch step of a small network,
    so a new copy is taken once the epochs since the last one have taken ``1 / BUDGET``
    times what it costs: after every epoch longer than a millisecond or so, every few epochs
    of a tiny one. It is always taken after the last epoch and after any epoch that
    callbacks or a checkpoint will see, so nothing outside ``fit`` sees unchecked weights.
    """

    #: The fraction of the training time that checks and copies may take.
    BUDGET = 0.02

    def __init__(self, step: TrainingStep, epoch: int) -> None:
        self.step = step
        self._take(epoch)

    def _take(self, epoch: int) -> None:
        start = time.perf_counter()
        model = self.step.model
        self._params = [model.backend.copy(p) for p in model.params]
        self._optimizer = _optimizer_snapshot(self.step.optimizer, model.backend)
        self.epoch = epoch  # the first epoch the copies do not include
        self._cost = time.perf_counter() - start
        self._since = 0.0

    def check(self, epoch: int, loss: float, seconds: float, *, force: bool = False) -> None:
        """After ``epoch`` (its mean ``loss``, its ``seconds``): raise
        :class:`TrainingDivergedError`, with the model and optimizer put back, if it diverged."""
        self._since += seconds
        # A step's loss comes from the weights before it, so a finite loss does not vouch for
        # the weights the epoch's last step left: they get their own check.
        what = f"the loss became {loss}" if not math.isfinite(loss) else None
        if what is None:
            if not force and self._since * self.BUDGET < self._cost:
                return
            start = time.perf_counter()
            if _all_finite(self.step.model):
                self._take(epoch + 1)
                self._cost += time.perf_counter() - start
                return
            what = "the weights became NaN or infinite"
        self._undo(what, epoch)

    def _undo(self, what: str, epoch: int) -> None:
        lr_now = self.step.optimizer.lr
        self.step.model.set_params(self._params)
        _restore_optimizer(self.step.optimizer, self._optimizer)
        since = "that epoch" if self.epoch == epoch else f"epoch {self.epoch}"
        raise TrainingDivergedError(
            f"training diverged: {what} in epoch {epoch}; the model keeps its weights "
            f"from before {since}. Lower the learning rate (now {lr_now:g}), scale "
            "the inputs, or use float64."
        )


def _validation_logs(model: MLP, val: tuple[Array, Array] | None) -> dict[str, float]:
    if val is None:
        return {}
    logs = {"val_loss": float(model.backend.to_numpy(model.loss_sum(*val))) / val[0].shape[0]}
    if model.loss in CLASSIFICATION_LOSSES:
        logs["val_accuracy"] = accuracy_device(model, *val)
    return logs


def _start(
    model: MLP, optimizer: Optimizer | None, resume_from: Any, ck: dict[str, Any] | None
) -> tuple[Optimizer, int, float, History]:
    """The optimizer, the first epoch, the base learning rate and the history: fresh, or as
    the checkpoint ``ck`` read from ``resume_from`` left them; the history names the code path
    the model was settled on."""
    history = History()
    history.code_path = model.code_path
    first_epoch, base_lr = 1, None
    if ck is not None:
        optimizer, state = resume(model, optimizer, resume_from, ck)
        first_epoch, base_lr = int(state["epoch"]) + 1, state["base_lr"]
        history.update({key: list(values) for key, values in state["history"].items()})
    optimizer = Adam(1e-3) if optimizer is None else optimizer
    # The rate is a plain attribute that callers may have set after construction.
    base_lr = optimizer.lr if base_lr is None else base_lr
    base_lr = check_real(base_lr, "the optimizer's learning rate", 0.0, low_open=True)
    return optimizer, first_epoch, base_lr, history


class _Epochs:
    """Runs one epoch of a :func:`fit` and returns its logs: the steps, the divergence check
    (:class:`_Rollback`), the epoch's loss, rate, time, throughput and validation metrics."""

    def __init__(
        self,
        source: BatchSource,
        step: TrainingStep,
        schedule: Any,
        batch_size: int | None,
        shuffle: bool,
        val: tuple[Array, Array] | None,
        last_epoch: int,
        callbacks: CallbackStates,
    ) -> None:
        self.source, self.step, self.schedule = source, step, schedule
        self.callbacks = callbacks
        self.run = step
        self.batch_size, self.shuffle, self.val = batch_size, shuffle, val
        self.last_epoch = last_epoch
        self.steps_done = step.optimizer.t
        self.check_every = False  # check the weights after every epoch, whatever it costs
        self.rollback: _Rollback | None = None

    def __call__(self, epoch: int) -> dict[str, float]:
        step, source = self.step, self.source
        if self.rollback is None:
            self.rollback = _Rollback(step, epoch)
        t0 = time.perf_counter()
        total, rows = self._steps(epoch)
        # The epoch loss is a mean over rows, or over the weights with sample weights.
        loss = float(step.model.backend.to_numpy(total)) / (source.weight_total or rows)
        elapsed = time.perf_counter() - t0
        force = self.check_every or epoch == self.last_epoch
        self.rollback.check(epoch, loss, elapsed, force=force)
        logs = {"epoch": epoch, "loss": loss, "lr": step.optimizer.lr, "time": elapsed}
        logs["samples_per_sec"] = rows / elapsed
        logs.update(source.epoch_stats())
        logs.update(_validation_logs(step.model, self.val))
        return logs

    def _steps(self, epoch: int) -> tuple[Any, int]:
        """One pass over the source; returns the summed loss (a device scalar) and the rows."""
        source, step, schedule = self.source, self.step, self.schedule
        total: Any = 0.0
        rows = 0
        n_batches = None
        if source.n_rows is not None and schedule is not None:
            size = source.n_rows if self.batch_size is None else self.batch_size
            n_batches = -(-source.n_rows // size)
        # The callbacks' factor (reduce-on-plateau) changes between epochs only.
        factor = self.callbacks.lr_factor(step.base_lr)
        if factor is not None and schedule is None:
            step.set_lr_factor(factor)
        for i, batch in enumerate(source.epoch(step.model.rng, self.batch_size, self.shuffle)):
            if schedule is not None:
                fraction = i / n_batches if n_batches else 0.0
                scheduled = schedule(self.steps_done, epoch - 1 + fraction)
                step.set_lr_factor(scheduled if factor is None else scheduled * factor)
            total = total + self.run(batch.X, batch.y, sample_weight=batch.sample_weight)
            rows += batch.rows
            self.steps_done += 1
        return total, rows


def _fix_code_path(
    model: MLP,
    rows: int | None,
    epochs: int,
    batch_size: int | None,
    client: Any,
    evaluate: bool,
    optimizer: str | None,
) -> None:
    """Fix the fit's code path before its first step, from the job alone: ``backend="auto"``
    (once per model), then the kernel tier, whose kernels (and the optimizer's) compile now."""
    if client is None:
        plan_fit(model, rows, epochs, batch_size, evaluate=evaluate, optimizer=optimizer)
    else:  # the workers run the steps: the driver only settles auto
        model.settle_backend(rows, epochs, batch_size)


def fit(
    model: MLP,
    X: Any,
    y: Any = None,
    *,
    epochs: int = 100,
    batch_size: int | NotGiven | None = NOT_GIVEN,
    optimizer: Optimizer | str | None = None,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    progress: bool = False,
    callbacks: Sequence[CallbackLike] = (),
    accumulate: int | NotGiven = NOT_GIVEN,
    schedule: Schedule | Callable[[int, float], float] | NotGiven | None = NOT_GIVEN,
    alpha: float = 0.0,
    clip_norm: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume_from: str | os.PathLike | None = None,
    sample_weight: Any = None,
    client: Any = None,
    local_steps: int = 1,
) -> History:
    """Train ``model`` in place with minibatch gradient descent.

    Parameters
    ----------
    model : MLP
        The model; its backend runs every step.
    X, y : array-like
        Training data. Host arrays are validated and moved to the device once. A memory-mapped
        array (``np.load(path, mmap_mode="r")``) is read in shuffled blocks of ``batch_size``
        rows, never whole. With ``y=None``, ``X`` may be a re-iterable of ``(X, y)`` batches.
    epochs : int, default 100
        Total passes over the data (with ``resume_from``, counted from the first run).
    batch_size : int or None, optional
        Rows per optimizer step; ``None`` trains on the full batch. Left out: the
        checkpoint's with ``resume_from``, else the full batch.
    optimizer : Optimizer or str, optional
        An optimizer, or a name (``"adam"``, ``"sgd"``) for one with default hyperparameters.
        Default ``Adam(lr=1e-3)``. Its state carries over between calls.
    shuffle : bool, default True
        Reshuffle every epoch (with the model's generator).
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    progress : bool, default False
        Show a progress bar (tqdm) with the loss and samples/s.
    callbacks : sequence
        Callables ``cb(epoch, logs)`` or :class:`~mlp_accel.callbacks.Callback` objects;
        returning True from an epoch hook stops training. Their states are part of the
        checkpoints and their ``lr_factor`` scales the rate (:mod:`mlp_accel.callbacks`).
    accumulate : int, optional
        Split each batch into this many micro-batches and make one update from their summed
        gradients: the same result as the whole batch, in less memory. Left out: the
        checkpoint's with ``resume_from``, else 1.
    schedule : Schedule or callable, optional
        ``factor = schedule(step, epoch)`` multiplies the optimizer's learning rate before
        each step (see :mod:`mlp_accel.schedules`); the base rate is restored at the end.
        Left out: the checkpoint's with ``resume_from`` (a custom callable must be given
        again), else none.
    alpha : float, default 0
        L2 penalty on the weights (scikit-learn's ``alpha``).
    clip_norm : float, optional
        Clip the global gradient norm to this value; ``None`` or ``inf``: no clipping.
    checkpoint : path, optional
        Write weights, optimizer state, epoch, RNG state and history here (atomically) every
        ``checkpoint_every`` epochs and at the end.
    resume_from : path, optional
        Continue the run of a checkpoint: weights, optimizer state, shuffling RNG and history
        are restored and training runs from the saved epoch up to ``epochs``, with the run's
        ``batch_size``, ``accumulate`` and ``schedule`` (given ones must equal them).
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight per row of in-memory ``X``: each step minimizes the weighted mean
        loss of its batch (the L2 penalty divided by the batch's weight sum), as
        scikit-learn's MLP, and the epoch's ``loss`` is the weighted mean.
    client : dask.distributed.Client, optional
        Train data-parallel on this Dask cluster (needs ``mlp-accel[dask]``): ``X`` and ``y``
        are dask arrays chunked by rows, or NumPy arrays split over the workers. Each
        step's gradient is summed over the workers' shares of the global batch and the update
        is made here: the same result as without a client (see :mod:`mlp_accel.distributed`).
        The history gains ``compute_time``, ``comm_time`` and ``bytes_sent`` per epoch.
    local_steps : int, default 1
        With ``client``: local SGD, each worker takes this many steps on its own rows before
        weights and optimizer state are averaged. Fewer messages, but **not** the same result
        as single-process training.

    Returns
    -------
    History
        Per-epoch loss, learning rate, time, samples/s and validation metrics.

    Raises
    ------
    TrainingDivergedError
        If the loss or the weights become NaN or infinite (the loss checked after every
        epoch, the weights after every epoch that takes over a millisecond or so, and always
        after the last step); the model and the optimizer's state are put back as they were
        at the start of that epoch (of an earlier one after epochs too short to be worth a
        copy each: the error names it).
    TypeError, ValueError
        A count that is not an integer of at least 1 (integral NumPy scalars are fine), a
        negative or non-finite ``alpha``, a ``clip_norm`` that is not positive, an unknown
        optimizer name, or a ``batch_size``, ``accumulate`` or ``schedule`` that differs from
        the one of the run ``resume_from`` continues.
    """
    epochs = check_count(epochs, "epochs")
    ck = None if resume_from is None else load_checkpoint(resume_from)
    run = None if ck is None else ck["state"]["run"]
    batch_size, accumulate, schedule = run_options(
        resume_from, run, batch_size, accumulate, schedule
    )
    checkpoint_every = check_count(checkpoint_every, "checkpoint_every")
    local_steps = check_count(local_steps, "local_steps")
    alpha = check_real(alpha, "alpha", 0.0)
    clip_norm = _checked_clip_norm(clip_norm)
    optimizer = _checked_optimizer(optimizer)
    states = CallbackStates(callbacks, model, ck, resume_from, validation_data is not None)
    begin_hooks, epoch_hooks, end_hooks = split_hooks(states.callbacks)

    rows = _row_count(X, y)
    rule = update_rule(optimizer, ck)
    _fix_code_path(model, rows, epochs, batch_size, client, validation_data is not None, rule)
    optimizer, first_epoch, base_lr, history = _start(model, optimizer, resume_from, ck)
    source = _open_source(model, X, y, epochs - first_epoch + 1, sample_weight, client, local_steps)
    options = {"accumulate": accumulate, "alpha": alpha, "clip_norm": clip_norm}
    step = source.make_step(model, optimizer, base_lr=base_lr, **options)
    step.restore_lr()
    val = model.prepare(*validation_data) if validation_data is not None else None
    # What the backend holds for the whole fit (the CPU backends: BLAS at one thread, which
    # every chunk of a batch needs; taken per batch, it costs microseconds a step).
    held = contextlib.ExitStack()
    own: list[Any] = []
    try:
        if client is None:
            held.enter_context(model.backend.training_scope())
        if progress:
            own.append(ProgressBar(first_epoch, epochs))
        if checkpoint is not None:
            settings = RunSettings(batch_size, accumulate, schedule_spec(schedule))
            args = (checkpoint, checkpoint_every, epochs, step, history, settings, states)
            own.append(CheckpointWriter(*args))
        for hook in begin_hooks:
            hook(model)
        states.restore()
        run_epoch = _Epochs(source, step, schedule, batch_size, shuffle, val, epochs, states)
        # Callbacks and checkpoints see every epoch's weights: those epochs are checked.
        run_epoch.check_every = bool(epoch_hooks) or checkpoint is not None
        for epoch in range(first_epoch, epochs + 1):
            logs = run_epoch(epoch)
            history.append(**logs)
            stop = any([bool(hook(epoch, logs)) for hook in epoch_hooks])
            for hook in own:
                hook.on_epoch_end(epoch, logs, stop)
            if stop:
                break
    finally:
        step.restore_lr()
        for closing in (*own, source, held):
            closing.close()
    for hook in end_hooks:
        hook()
    return history
