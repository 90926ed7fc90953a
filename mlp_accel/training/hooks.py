"""The training loop's own callbacks: checkpoints and the progress bar, each owning its state.

They follow :class:`~mlp_accel.callbacks.Callback`, with two differences the loop needs: the
epoch hook also learns whether training stops after this epoch (a checkpoint is then written
whatever the interval), and :meth:`close` runs even when training fails.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CheckpointWriter", "ProgressBar"]


class CheckpointWriter:
    """Write weights, optimizer state, epoch, RNG state, history, the run's ``settings`` (a
    :class:`~mlp_accel.training.resume.RunSettings`) and the callbacks' states (a
    :class:`~mlp_accel.training.callback_states.CallbackStates`) to ``path`` (atomically)
    every ``every`` epochs, after the last epoch, and when training stops early."""

    def __init__(
        self,
        path: str | os.PathLike,
        every: int,
        last_epoch: int,
        step: Any,
        history: dict[str, list[float]],
        settings: Any,
        callbacks: Any,
    ) -> None:
        self.path, self.every, self.last_epoch = path, every, last_epoch
        self.step, self.history, self.settings = step, history, settings
        self.callbacks = callbacks

    def on_epoch_end(self, epoch: int, logs: dict[str, float], stopping: bool) -> None:
        if stopping or epoch % self.every == 0 or epoch == self.last_epoch:
            from ..io import save_checkpoint

            model = self.step.model
            # After the callbacks' epoch hooks: their states include this epoch.
            callback_states, arrays = self.callbacks.to_checkpoint()
            state = {
                "epoch": epoch,
                "rng_state": model.rng.bit_generator.state,
                "base_lr": self.step.base_lr,
                "history": dict(self.history),
                "run": self.settings.to_json(),
                "callbacks": callback_states,
            }
            # The file holds the base rate: a schedule's last factor may be 0 (the end of a
            # cosine), a rate no optimizer takes. The next step sets its own factor again.
            self.step.restore_lr()
            save_checkpoint(self.path, model, self.step.optimizer, state, arrays)
            # A Dask step names it when the scheduler is lost.
            self.step.last_checkpoint = (os.fspath(self.path), epoch)

    def close(self) -> None:
        """Nothing to release: every write is complete when it returns."""
        return None


class ProgressBar:
    """A tqdm bar over the epochs with the loss and samples/s of the last one."""

    def __init__(self, first_epoch: int, last_epoch: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=max(last_epoch - first_epoch + 1, 0),
            unit="epoch",
            dynamic_ncols=True,
            leave=False,
            # Off when stderr is not a terminal (tqdm's None): a pipe or a log file would get
            # every carriage-return frame. MLP_ACCEL_PROGRESS=always draws it anyway.
            disable=False if os.environ.get("MLP_ACCEL_PROGRESS") == "always" else None,
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, float], stopping: bool) -> None:
        bar = self.bar
        bar.update(1)
        postfix = f"loss={logs['loss']:.4g}, samples_s={logs['samples_per_sec']:.3g}"
        bar.set_postfix_str(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()
