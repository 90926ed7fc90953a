"""The Numba backend: NumPy as ``xp``, the hot hooks replaced by jitted kernels.

Three kernel tiers run a training step; a fit picks one before its first step, from the job
alone (:func:`mlp_accel.backends._auto.numba_tier`), compiles what it needs then (or loads
it from the disk cache), and keeps it to the end:

- ``"layers"``: matrix products on NumPy's BLAS; bias + activation, activation derivative +
  column sums, the output loss gradient and the optimizer updates are fused kernels
  (:mod:`.kernels`). Every network; the only tier of wide ones.
- ``"generic"``: for narrow networks (every layer at most :data:`.paths.MAX_WIDTH` wide),
  one whole-network kernel that walks every sample through forward and backward in cache
  and takes the widths as data (:mod:`.generic`): compiled once per dtype, activation set
  and output, whatever the widths.
- ``"specialized"``: for the smallest networks (at most :data:`.paths.UNROLL_LIMIT`
  weights), a kernel generated for the exact widths (:mod:`.fused`), several times faster
  than the generic one there and quicker to compile, but compiled per shape; chosen only
  for a job long enough to repay its compile. Asked of a larger network, the generic
  kernel runs.

Every kernel is serial and ``nogil``. The model splits a batch into fixed chunks of rows
and runs them on the package's worker threads, so Numba's own thread pool never starts and
the thread count never changes a result.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ...ops.optimizers import OptimizerRow, step_scalars
from ...ops.table import Activation, Loss
from ..base import BackendUnavailableError, FusedNetwork, NetworkSpec, adam_bias_corrections
from ..numpy_backend import NumpyBackend, _numpy_layer
from . import tasks as T
from .networks import GenericNetwork, SmallNetwork
from .tasks import runnable_tier

__all__ = ["NumbaBackend"]

_FLOATS = (np.dtype("float32"), np.dtype("float64"))


def _native(*arrays: Any) -> bool:
    """Whether the kernels take these arrays: C-contiguous NumPy floats of one dtype."""
    first = arrays[0]
    if not isinstance(first, np.ndarray) or first.dtype not in _FLOATS:
        return False
    dtype = first.dtype
    for x in arrays:
        if not isinstance(x, np.ndarray) or x.dtype != dtype or not x.flags.c_contiguous:
            return False
    return True


class NumbaBackend(NumpyBackend):
    """NumPy arrays on the host CPU, hot hooks replaced by Numba-jitted kernels.

    Parameters
    ----------
    tier : {"layers", "generic", "specialized"}, optional
        Run every fit on this kernel tier (where the network has it: a wide network runs
        ``"layers"`` whatever is asked), instead of the tier chosen per job
        (``get_backend("numba", tier="generic")``; benchmarks use it).

    Raises
    ------
    BackendUnavailableError
        If numba is not installed.
    ValueError
        If ``tier`` is not one of the three.
    """

    name = "numba"

    def __init__(self, tier: str | None = None) -> None:
        if tier not in (None, "layers", "generic", "specialized"):
            raise ValueError(
                f"unknown numba kernel tier {tier!r}; known: layers, generic, specialized"
            )
        self.tier = tier
        try:
            import numba
        except ImportError as exc:
            raise BackendUnavailableError(
                "backend 'numba' is unavailable: numba is not installed (pip install numba)"
            ) from exc
        from . import kernels

        self._numba = numba
        self._kernels = kernels
        self._networks: dict[tuple[NetworkSpec, str], FusedNetwork] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, str]:
        """Numba's version and the worker threads, without compiling a kernel."""
        from .. import _threads

        return {
            **super().describe(),
            "numba": self._numba.__version__,
            "threads": f"{_threads.worker_count()} worker threads, fixed chunks",
        }

    # -- layer hooks -------------------------------------------------------------------
    def dense_forward(self, a_prev: Any, W: Any, b: Any, activation: Activation) -> tuple[Any, Any]:
        if activation.row is None or not _native(a_prev, W, b):
            return super().dense_forward(a_prev, W, b, activation)
        z = a_prev @ W  # BLAS
        a = z if activation.name == "identity" else np.empty_like(z)
        self._kernels.layer_module(activation.name, z.dtype.name).dense_forward(z, b, a)
        return z, a

    def forward_layer(self, activation: Activation, dtype: str) -> Any:
        """``layer(a_prev, W, b) -> a``: :meth:`dense_forward` without ``z``, for inference.

        The same product and the same kernel as :meth:`dense_forward`, the kernel looked up
        once instead of at every call; for C-contiguous arrays of ``dtype`` (the model
        checks its inputs once per call). ``None`` where a subclass replaced
        :meth:`dense_forward`.
        """
        if type(self).dense_forward is not NumbaBackend.dense_forward:
            return None
        if activation.row is None:  # dense_forward hands these to NumPy's
            return _numpy_layer(activation)
        kernel = self._kernels.layer_module(activation.name, dtype).dense_forward
        identity = activation.name == "identity"

        def layer(a_prev: Any, W: Any, b: Any) -> Any:
            z = a_prev @ W  # BLAS
            a = z if identity else np.empty_like(z)
            kernel(z, b, a)
            return a

        return layer

    def dense_backward(
        self,
        grad: Any,
        z: Any,
        a: Any,
        a_prev: Any,
        W: Any,
        activation: Activation,
        need_input_grad: bool,
    ) -> tuple[Any, Any, Any | None]:
        if activation.row is None or not _native(grad, z, a, a_prev, W):
            return super().dense_backward(grad, z, a, a_prev, W, activation, need_input_grad)
        # grad is always a fresh array made by the layer above (or the loss), as the NumPy
        # backend also relies on: dz overwrites it instead of filling a new n-by-width array.
        dz = grad
        db = np.empty(grad.shape[1], dtype=grad.dtype)
        module = self._kernels.layer_module(activation.name, grad.dtype.name)
        module.dense_backward(grad, z, a, dz, db)
        dW = a_prev.T @ dz  # BLAS
        da_prev = dz @ W.T if need_input_grad else None
        return dW, db, da_prev

    def output_loss_gradient(
        self, z: Any, yhat: Any, y: Any, loss: Loss, activation: Activation, denom: float
    ) -> tuple[Any, Any]:
        # A loss that requires its output activation is only defined with it.
        required = None if loss.row is None else loss.row.requires
        if (
            loss.row is None
            or activation.row is None
            or required not in (None, activation.name)
            or not _native(z, yhat, y)
        ):
            return super().output_loss_gradient(z, yhat, y, loss, activation, denom)
        dz = np.empty_like(yhat)
        m = self._kernels.output_module(loss.name, activation.name, z.dtype.name)
        total = m.output_loss_gradient(z, yhat, y, 1.0 / denom, dz)
        return z.dtype.type(total), dz

    def loss_sum(self, z: Any, yhat: Any, y: Any, loss: Loss) -> Any:
        if loss.row is None or not _native(z, yhat, y):
            return super().loss_sum(z, yhat, y, loss)
        # the output module of the matched pair: loss_sum depends on the loss only
        m = self._kernels.output_module(loss.name, loss.fused_activation, z.dtype.name)
        return z.dtype.type(m.loss_sum(z, yhat, y))

    # -- optimizer hooks (in place) ------------------------------------------------------
    def sgd_update(
        self,
        params: list[Any],
        grads: list[Any],
        velocity: list[Any] | None,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> tuple[list[Any], list[Any] | None]:
        # Only the first group is checked: per-array checks would cost more than the update
        # of a small network. The kernels take any layout and dtype the model produces.
        if not params or not _native(
            params[0], grads[0], *([] if velocity is None else velocity[:1])
        ):
            return super().sgd_update(params, grads, velocity, lr, momentum, nesterov)
        if velocity is None:
            for p, g in zip(params, grads):
                self._kernels.sgd_update(p, g, lr)
        else:
            for p, g, v in zip(params, grads, velocity):
                self._kernels.sgd_momentum_update(p, g, v, lr, momentum, nesterov)
        return params, velocity

    def adam_update(
        self,
        params: list[Any],
        grads: list[Any],
        m: list[Any],
        v: list[Any],
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
    ) -> tuple[list[Any], list[Any], list[Any]]:
        if not params or not _native(params[0], grads[0], m[0], v[0]):
            return super().adam_update(params, grads, m, v, step, lr, beta1, beta2, eps)
        c1, c2 = adam_bias_corrections(beta1, beta2, step)
        for p, g, mi, vi in zip(params, grads, m, v):
            self._kernels.adam_update(p, g, mi, vi, lr, beta1, beta2, eps, c1, c2)
        return params, m, v

    def optimizer_update(
        self,
        row: OptimizerRow,
        params: list[Any],
        grads: list[Any],
        state: list[list[Any]],
        scalars: tuple[float, ...],
        tensor_scalars: list[tuple[float, ...]],
    ) -> tuple[list[Any], list[list[Any]]]:
        if not params or not _native(params[0], grads[0], *(s[0] for s in state)):
            return super().optimizer_update(row, params, grads, state, scalars, tensor_scalars)
        module = self._kernels.optimizer_module(row.name, params[0].dtype.name)
        tensors = [(p, g, *(s[k] for s in state)) for k, (p, g) in enumerate(zip(params, grads))]
        if not row.layerwise:
            for arrays, own in zip(tensors, tensor_scalars):
                module.update(*arrays, *scalars, *own)
            return params, state
        # All the sums first: each tensor's step scalar needs its own two norms only, but
        # the state of every tensor is updated before any parameter moves, as in xp_update.
        sums = [
            module.first(*arrays, *scalars, *own) for arrays, own in zip(tensors, tensor_scalars)
        ]
        steps = step_scalars(row, scalars, tensor_scalars, sums)
        for arrays, own, s in zip(tensors, tensor_scalars, steps):
            module.second(*arrays, *scalars, *own, s)
        return params, state

    # -- kernel tiers --------------------------------------------------------------------
    def choose_tier(self, spec: NetworkSpec, job: Any = None) -> tuple[str, str]:
        """The kernel tier for a fit of ``spec``, and why: a pure function of the job (see
        :func:`mlp_accel.backends._auto.numba_tier`); without a job, the generic network
        kernel for a narrow network, else the per-layer kernels."""
        from .._auto import numba_tier

        if self.tier is not None:
            tier = runnable_tier(spec, self.tier)
            if tier != self.tier:
                return tier, f"the {tier} kernels ({spec} has no {self.tier} kernel)"
            return tier, f"the {tier} kernels (as the backend was asked)"
        return numba_tier(spec, job)

    def fused_network(self, spec: NetworkSpec, tier: str | None = None) -> FusedNetwork | None:
        """The whole-network kernel of ``tier`` for ``spec`` (``None``: the tier
        :meth:`choose_tier` gives without a job), or ``None`` for the per-layer tier.

        Its kernels compile on first use where :meth:`prepare` has not compiled them.
        """
        if tier is None:
            tier = self.choose_tier(spec)[0]
        if tier not in ("layers", "generic", "specialized"):
            raise ValueError(
                f"unknown numba kernel tier {tier!r}; known: layers, generic, specialized"
            )
        tier = runnable_tier(spec, tier)
        if tier == "layers":
            return None
        with self._lock:
            network = self._networks.get((spec, tier))
            if network is None:
                if tier == "generic":
                    from .generic import generic_key, load_module

                    network = GenericNetwork(spec, load_module(generic_key(spec)))
                else:
                    from .fused import load_module as load_fused

                    network = SmallNetwork(spec, load_fused(spec))
                self._networks[(spec, tier)] = network
        return network

    def prepare(
        self,
        spec: NetworkSpec,
        tier: str,
        stream: Any = None,
        evaluate: bool = True,
        optimizer: str | None = None,
    ) -> float:
        """Compile, or load from the disk cache, every kernel a fit of ``spec`` on ``tier``
        runs (with ``evaluate``, the per-layer kernels that compute a loss outside a step
        too; with ``optimizer``, that rule's kernels instead of SGD's and Adam's), in this
        thread; a compile says so on ``stream`` (standard error by default, ``False``
        silences it). Returns the seconds spent compiling."""
        return T.compile_tasks(T.tasks_for(spec, tier, evaluate, optimizer), stream)

    def warmup(self, spec: NetworkSpec) -> None:
        """Compile, or load from the disk cache, every kernel a model of ``spec`` may run on
        any tier, and return once they are loaded (``mlp-accel warmup``).

        Raises
        ------
        RuntimeError
            If a kernel failed to compile.
        """
        try:
            T.compile_tasks(T.tasks_for(spec, "all"), False)
        except Exception as exc:
            raise RuntimeError(f"numba kernels for {spec} did not compile: {exc}") from exc
