"""The backend contract and its generic implementation, written only with ``self.xp``.

A backend is a small object: an array namespace (``xp``), a device, host <-> device
transfers, ``synchronize``, and a handful of hot hooks. Every hook here is implemented
generically with ``xp``; a subclass overrides only the hooks it can make faster, keeps their
signatures, and falls back to ``super()`` for the cases it does not handle.

Optimizer hooks may update their inputs in place and return them (fast backends do); the
generic ones return new arrays, since the array API has no ``out=``. Callers always use the
returned lists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..ops.optimizers import OptimizerRow, xp_update
from ..ops.table import Activation, Loss, get_activation

__all__ = [
    "Backend",
    "NetworkSpec",
    "FusedNetwork",
    "BackendUnavailableError",
    "IDENTITY",
    "adam_bias_corrections",
]

Array = Any


class BackendUnavailableError(RuntimeError):
    """A known backend cannot start on this machine; the message says why."""


@dataclass(frozen=True)
class NetworkSpec:
    """What a fused whole-network kernel is specialized on."""

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    dtype: str


class FusedNetwork(Protocol):
    """A whole-network kernel a backend may offer for one :class:`NetworkSpec`."""

    def loss_and_gradients(
        self, params: list[Array], X: Array, y: Array, denom: float
    ) -> tuple[Array, list[Array]]:
        """Return (loss summed over the batch, gradients of loss_sum / denom)."""

    def forward(self, params: list[Array], X: Array) -> Array:
        """Return the network's outputs after the output activation."""


def adam_bias_corrections(beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """Adam's bias corrections ``(1 - beta1**step, 1 - beta2**step)`` for step ``step`` (from 1).

    Computed in double precision on the host, once per step, by every backend's
    ``adam_update``: the moments are divided by these, whatever the parameters' dtype.
    """
    return 1.0 - beta1**step, 1.0 - beta2**step


class Backend:
    """Generic backend: every hook written against the array namespace ``xp``.

    Subclasses set ``name``, ``xp`` and ``device`` and implement the transfers.
    """

    name: str = "generic"
    xp: Any = None
    device: Any = "cpu"

    # -- transfers and synchronization -------------------------------------------------
    def asarray(self, x: Any, dtype: str) -> Array:
        """Copy host data to the device as ``dtype`` ("float32" or "float64")."""
        return self.xp.asarray(x, dtype=self.dtype(dtype))

    def to_numpy(self, x: Array) -> Any:
        """Copy a device array to a NumPy array on the host."""
        import numpy as np

        return np.asarray(x)

    def synchronize(self) -> None:
        """Block until queued device work has finished (a no-op on the CPU)."""

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for ``"float32"`` or ``"float64"``."""
        return getattr(self.xp, name)

    def copy(self, x: Array) -> Array:
        """A device copy of ``x``."""
        return self.xp.asarray(x, copy=True)

    def is_device_array(self, x: Any) -> bool:
        """Whether ``x`` already lives on this backend's device (and skips host validation).

        Host NumPy arrays are never device arrays here, even on the NumPy backend, so public
        methods always validate them.
        """
        return False

    def index_array(self, index: Any) -> Array:
        """Copy a host integer index array to the device."""
        return self.xp.asarray(index)

    def take_rows(self, x: Array, index: Array) -> Array:
        """Rows of ``x`` at the integer positions ``index`` (a device array)."""
        return self.xp.take(x, index, axis=0)

    def stream_to_device(
        self, host_batches: Iterator[tuple[Any, Any]], dtype: str
    ) -> Iterator[tuple[Array, Array]]:
        """Move a stream of validated host batches ``(X, y)`` to the device, in order.

        The generic version copies each batch when it is asked for; a GPU backend overrides
        this to copy the next batch while the current one computes.
        """
        for X, y in host_batches:
            yield self.asarray(X, dtype), self.asarray(y, dtype)

    def describe(self) -> dict[str, str]:
        """Facts about the backend for ``mlp-accel backends``."""
        return {"device": str(self.device)}

    # -- hot hooks ---------------------------------------------------------------------
    def dense_forward(
        self, a_prev: Array, W: Array, b: Array, activation: Activation
    ) -> tuple[Array, Array]:
        """``z = a_prev @ W + b`` and ``a = f(z)``; returns ``(z, a)``."""
        z = a_prev @ W + b
        return z, activation.forward(z, xp=self.xp)

    def forward_layer(
        self, activation: Activation, dtype: str
    ) -> Callable[[Array, Array, Array], Array] | None:
        """A layer's forward pass for predictions, ``layer(a_prev, W, b) -> a``, or ``None``.

        ``a`` must be what :meth:`dense_forward` gives, bit for bit; only ``z``, which a
        prediction does not keep, may be overwritten. The model builds these functions once
        (``mlp_accel._inference``) and calls them on C-contiguous arrays of ``dtype`` only.
        The generic backend offers none: predictions run :meth:`dense_forward`.
        """
        return None

    def dense_backward(
        self,
        grad: Array,
        z: Array,
        a: Array,
        a_prev: Array,
        W: Array,
        activation: Activation,
        need_input_grad: bool,
    ) -> tuple[Array, Array, Array | None]:
        """From ``dL/da`` of a layer, return ``(dW, db, dL/da_prev)``.

        ``dz = f'(z) * grad``, ``dW = a_prev.T @ dz``, ``db = sum(dz, axis=0)``,
        ``da_prev = dz @ W.T`` (``None`` when ``need_input_grad`` is false). Any division by
        the batch size is already inside ``grad``.
        """
        xp = self.xp
        dz = activation.vjp(grad, z, a, xp)
        dW = a_prev.T @ dz
        db = xp.sum(dz, axis=0)
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def output_loss_gradient(
        self, z: Array, yhat: Array, y: Array, loss: Loss, activation: Activation, denom: float
    ) -> tuple[Array, Array]:
        """Return ``(loss summed over the batch, dL/dz)`` at the output, with ``L = sum / denom``.

        For the matched pairs (sigmoid + binary cross-entropy, softmax + cross-entropy,
        identity + squared error) ``dL/dz`` is exactly ``(yhat - y) / denom``: the
        matched-pair shortcut. Any other pair goes through the generic chain rule.
        """
        xp = self.xp
        value = loss.value_sum(z, yhat, y, xp=xp)
        if loss.fused_activation == activation.name:
            dz = (yhat - y) * (1.0 / denom)
        else:
            dz = activation.vjp(loss.output_grad(yhat, y, xp=xp) * (1.0 / denom), z, yhat, xp)
        return value, dz

    def loss_sum(self, z: Array, yhat: Array, y: Array, loss: Loss) -> Array:
        """The loss summed over the batch (a device scalar), from logits ``z``."""
        return loss.value_sum(z, yhat, y, xp=self.xp)

    def sgd_update(
        self,
        params: list[Array],
        grads: list[Array],
        velocity: list[Array] | None,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> tuple[list[Array], list[Array] | None]:
        """SGD with optional (Nesterov) momentum, in PyTorch's form.

        ``v = momentum * v + g``; step ``g + momentum * v`` (Nesterov) or ``v``;
        ``p -= lr * step``. ``velocity`` is ``None`` when ``momentum == 0``.
        """
        if velocity is None:
            return [p - lr * g for p, g in zip(params, grads)], None
        new_v = [momentum * v + g for v, g in zip(velocity, grads)]
        if nesterov:
            steps = [g + momentum * v for g, v in zip(grads, new_v)]
        else:
            steps = new_v
        return [p - lr * s for p, s in zip(params, steps)], new_v

    def adam_update(
        self,
        params: list[Array],
        grads: list[Array],
        m: list[Array],
        v: list[Array],
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
    ) -> tuple[list[Array], list[Array], list[Array]]:
        """Adam (Kingma & Ba), bias-corrected, in PyTorch's form; ``step`` counts from 1."""
        xp = self.xp
        c1, c2 = adam_bias_corrections(beta1, beta2, step)
        new_m = [beta1 * mi + (1.0 - beta1) * g for mi, g in zip(m, grads)]
        new_v = [beta2 * vi + (1.0 - beta2) * (g * g) for vi, g in zip(v, grads)]
        new_p = [
            p - lr * (mi / c1) / (xp.sqrt(vi / c2) + eps) for p, mi, vi in zip(params, new_m, new_v)
        ]
        return new_p, new_m, new_v

    def optimizer_update(
        self,
        row: OptimizerRow,
        params: list[Array],
        grads: list[Array],
        state: list[list[Array]],
        scalars: tuple[float, ...],
        tensor_scalars: list[tuple[float, ...]],
    ) -> tuple[list[Array], list[list[Array]]]:
        """One step of a rule of the optimizer table, rendered to ``xp``.

        The rules are AdamW, RMSprop, Adagrad, LARS and LAMB (``mlp_accel.ops.optimizers``);
        this rendering is the reference of every kernel.
        ``state[i][k]`` is the rule's state ``row.state[i]`` of tensor ``k``; ``scalars`` are
        the rule's host scalars of this step and ``tensor_scalars[k]`` tensor ``k``'s, all
        computed in double precision by the optimizer. Returns ``(params, state)``.
        """
        return xp_update(row, params, grads, state, scalars, tensor_scalars, self.xp)

    #: Whether a batch runs in fixed chunks of rows on the package's worker threads (the CPU
    #: backends; see ``_chunks.py``), or whole (a GPU runs one batch at a time).
    chunked: bool = False

    def fused_network(self, spec: NetworkSpec, tier: str | None = None) -> FusedNetwork | None:
        """Return a whole-network kernel for ``spec`` on kernel ``tier``, or ``None``.

        ``tier=None`` asks for the backend's default for ``spec``; ``None`` back means the
        generic layer loop. The model asks once, before its first step, and uses what it
        gets for every step.
        """
        return None

    def training_scope(self) -> contextlib.AbstractContextManager[Any]:
        """Return a context that :func:`mlp_accel.fit` holds for its whole run.

        Nothing here; the CPU backends hold BLAS to one thread, as their chunked batches need.
        """
        return contextlib.nullcontext()

    def choose_tier(self, spec: NetworkSpec, job: Any = None) -> tuple[str, str]:
        """Return the kernel tier a fit of ``spec`` runs, and why.

        Decided from the job alone (its widths, rows, epochs and dtype: never timings or
        what a cache holds); ``"layers"`` here.
        """
        return "layers", "the per-layer hooks"

    def prepare(
        self,
        spec: NetworkSpec,
        tier: str,
        stream: Any = None,
        evaluate: bool = True,
        optimizer: str | None = None,
    ) -> float:
        """Compile or load what ``tier`` of ``spec`` runs, before a first step.

        With ``evaluate``, what computes a loss outside a training step too; ``optimizer``
        names the optimizer table's rule the fit's updates run (``None``: SGD or Adam).
        Returns the seconds spent compiling (nothing to compile here).
        """
        return 0.0

    def max_batch_rows(self, spec: NetworkSpec) -> int | None:
        """Most rows of one training micro-batch of ``spec`` that fit in memory (``None``: any).

        A bigger batch is cut into micro-batches of at most this many rows whose gradients are
        summed before one update (see :meth:`mlp_accel.MLP.loss_and_gradients`).
        """
        return None

    def warmup(self, spec: NetworkSpec) -> None:
        """Compile or load whatever the backend needs for ``spec`` (a no-op here)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.device}>"


#: The pass-through activation, for handing an already computed ``dL/dz`` to ``dense_backward``.
IDENTITY = get_activation("identity")
