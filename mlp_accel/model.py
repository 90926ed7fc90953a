"""The multilayer perceptron: parameters, forward, backward, predict.

The model holds its parameters as device arrays of its backend and calls only the backend's
hooks and ``backend.xp``; the same code runs on every backend. Host data is validated and
converted once, at the edge (:meth:`MLP.prepare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._auto_request import auto_options, settle_auto
from ._validation import (
    check_dtype,
    check_inputs,
    check_layer_spec,
    check_targets,
    check_weights,
    make_rng,
)
from .activations import get_activation
from .backends import Backend, BackendLike, NetworkSpec, get_backend
from .backends import _layer_loop as layer_loop
from .backends._auto import BackendChoice, choose_backend
from .initializers import initial_weights
from .losses import get_loss
from .ops.layout import n_parameters, param_shapes
from .preprocessing import Preprocessing

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MLP", "sum_loss_and_gradients"]

Array = Any


def sum_loss_and_gradients(
    backend: Backend, parts: Iterable[tuple[Array, list[Array]]]
) -> tuple[Array, list[Array]]:
    """Add up the ``(loss_sum, grads)`` of the micro-batches of one batch.

    Each part must have been divided by the whole batch's ``denom``, so the sums are the big
    batch's (to float rounding) and the caller makes one update from them.
    """
    loss_sum: Any = None
    grads: list[Array] = []
    for part_loss, part in parts:
        if loss_sum is None:
            # A backend may hand back reused buffers: the sum must own its arrays.
            loss_sum = backend.copy(part_loss)
            grads = [backend.copy(g) for g in part]
        else:
            loss_sum = loss_sum + part_loss
            grads = [g + p for g, p in zip(grads, part)]
    return loss_sum, grads


class MLP:
    """A fully connected feed-forward network trained by hand-derived backpropagation.

    Parameters
    ----------
    layers : sequence of int
        Widths ``[n_in, hidden..., n_out]``.
    activations : sequence of str or str, optional
        One per weight layer (``len(layers) - 1``): ``identity``, ``relu``, ``leaky_relu``,
        ``sigmoid``, ``tanh``, ``softmax`` (output only). Default: relu hidden layers and
        the output activation that matches ``loss``.
    loss : str, optional
        ``binary_cross_entropy`` (sigmoid output), ``cross_entropy`` (softmax output) or
        ``squared_error`` (any output). Default: the one that matches the output activation.
    backend : str, Backend or (str, dict), default "auto"
        ``"auto"``, ``"numpy"``, ``"numba"``, ``"cupy"``, a :class:`Backend` instance, or a
        name with backend options, ``("cupy", {"device": 1, "tf32": True})`` (the same as
        ``backend=get_backend("cupy", device=1, tf32=True)``; see
        :func:`~mlp_accel.get_backend`). ``"auto"`` (unless ``MLP_ACCEL_BACKEND`` names a
        backend) starts on NumPy and is decided by the model's first :func:`~mlp_accel.fit`,
        from the shape, rows, epochs and the compiled kernels (the options going to the
        backend chosen, where it takes them); :attr:`backend_choice` records the choice and why.
    dtype : {"float32", "float64"}, default "float32"
        Dtype of parameters and computation.
    seed : int or numpy.random.Generator, optional
        Seeds the one host generator that draws initial weights and shuffles.
    init : {"he", "glorot", "normal"}, default "glorot"
        Weight initialization; ``"normal"`` is the tutorial's N(0, 0.1).
    weights : sequence of array-like, optional
        Initial ``[W1, b1, W2, b2, ...]`` (as :meth:`get_weights`) instead of drawn ones; the
        generator is then not advanced.
    preprocessing : Preprocessing, optional
        What raw data goes through at the edge (see :attr:`preprocessing`).

    Examples
    --------
    >>> import mlp_accel as ma
    >>> model = ma.MLP([2, 4, 3, 1], activations=["relu", "relu", "sigmoid"],
    ...                loss="binary_cross_entropy", backend="numpy", seed=42)
    >>> [w.shape for w in model.get_weights()]
    [(2, 4), (4,), (4, 3), (3,), (3, 1), (1,)]
    """

    def __init__(
        self,
        layers: Sequence[int],
        activations: Sequence[str] | str | None = None,
        loss: str | None = None,
        *,
        backend: BackendLike = "auto",
        dtype: str = "float32",
        seed: Any = None,
        init: str = "glorot",
        weights: Sequence[Any] | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.layers, self.activations, self.loss = check_layer_spec(layers, activations, loss)
        self.preprocessing = preprocessing
        self.dtype = check_dtype(dtype)
        self.init = init
        self.rng = make_rng(seed)
        #: What ``backend="auto"`` chose and why (a :class:`BackendChoice`); ``None`` for a
        #: backend named explicitly.
        self.backend_choice: BackendChoice | None = None
        options = auto_options(backend)
        # Options of an "auto" request wait for fit's choice, which hands each its own.
        self._backend_options = options or {}
        self._auto_pending = options is not None
        if self._auto_pending:
            # The job (rows, epochs) is known only at fit: NumPy starts at once and compiles
            # nothing, so it serves until then; ma.fit moves the model if another pays.
            self.backend_choice = choose_backend(None, ["numpy"])
            self.backend = get_backend(self.backend_choice.name)
        else:
            self.backend = get_backend(backend)
        self._activation_fns = [get_activation(a) for a in self.activations]
        self._loss_fn = get_loss(self.loss)
        self._fused: Any = None
        self._fused_checked = False
        if weights is None:
            host = initial_weights(self.layers, init, self.rng)
        else:
            host = check_weights(weights, self.weight_shapes, self.dtype)
        self._params = [self.backend.asarray(w, self.dtype) for w in host]

    # -- description ---------------------------------------------------------------------
    @property
    def spec(self) -> NetworkSpec:
        """What a backend's fused kernel would be specialized on."""
        return NetworkSpec(self.layers, self.activations, self.loss, self.dtype)

    @property
    def n_layers(self) -> int:
        """Number of weight layers."""
        return len(self.layers) - 1

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The feature scaling, class labels and target scaling applied at the edge, or None.

        A model saved by ``mlp-accel train`` comes back from :func:`~mlp_accel.load` with one:
        every method taking host data (``forward``, ``predict``, ``predict_proba``,
        ``evaluate``, ``gradients``) and :func:`~mlp_accel.fit` then take raw features and the
        user's labels or targets, and :meth:`predict` returns labels (or targets in their
        units). Set to ``None`` to work in the network's terms (scaled inputs, class indices).
        """
        return self._preprocessing

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing | None) -> None:
        if value is not None and not isinstance(value, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing or None, got {value!r}")
        if value is not None:
            value.checked(self.layers[0], self.layers[-1], self.loss)
        self._preprocessing = value

    @property
    def weight_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of ``[W1, b1, W2, b2, ...]``."""
        return param_shapes(self.layers)

    @property
    def n_params(self) -> int:
        """Total number of trainable parameters."""
        return n_parameters(self.layers)

    @property
    def params(self) -> list[Array]:
        """The parameters as device arrays, ``[W1, b1, ...]`` (not copies)."""
        return self._params

    def __repr__(self) -> str:
        return (
            f"MLP(layers={list(self.layers)}, activations={list(self.activations)}, "
            f"loss={self.loss!r}, backend={self.backend.name!r}, dtype={self.dtype!r})"
        )

    # -- weights ---------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """``[W1, b1, W2, b2, ...]`` as NumPy arrays; ``W_k`` is ``(n_{k-1}, n_k)``."""
        return [self.backend.to_numpy(p).copy() for p in self._params]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace the parameters; same order and shapes as :meth:`get_weights`.

        Raises
        ------
        ValueError
            Wrong count or shapes, or non-finite values.
        """
        checked = check_weights(weights, self.weight_shapes, self.dtype)
        self._params = [self.backend.asarray(w, self.dtype) for w in checked]

    def weight_total(self, sample_weight: Array) -> Array:
        """The sum of a device weight vector as a device scalar; 1 where it is 0 (the gradient
        of a batch whose weights are all zero is zero, not NaN)."""
        xp = self.backend.xp
        total = xp.sum(sample_weight)
        return total + xp.astype(total == 0, total.dtype)

    def set_params(self, params: list[Array]) -> None:
        """Replace the parameters with device arrays (no validation; used by training)."""
        self._params = list(params)

    # -- data at the edge ------------------------------------------------------------------
    def prepare_inputs(self, X: Any) -> Array:
        """Validate host inputs and move them to the device once (device arrays pass through)."""
        pre = self._preprocessing
        if self.backend.is_device_array(X):
            if X.ndim != 2 or X.shape[1] != self.layers[0]:
                raise ValueError(
                    f"X has shape {tuple(X.shape)}, but the model expects (n, {self.layers[0]})"
                )
            return X if pre is None else pre.device_inputs(self.backend, X, self.dtype)
        return self.backend.asarray(self._host_inputs(X), self.dtype)

    def _host_inputs(self, X: Any) -> np.ndarray:
        pre = self._preprocessing
        if pre is None:
            return check_inputs(X, self.layers[0], self.dtype)
        return pre.inputs(X, self.layers[0], self.dtype)

    def _host_targets(self, y: Any, n_rows: int) -> np.ndarray:
        if self._preprocessing is not None:
            y = self.backend.to_numpy(y) if self.backend.is_device_array(y) else y
            y = self._preprocessing.targets(y)
        return check_targets(y, n_rows, self.layers[-1], self.loss, self.dtype)

    def prepare_host(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate host ``X`` and ``y`` and convert them to the model's dtype, on the host.

        Integer labels become one-hot for ``cross_entropy``; a 1-D ``y`` becomes a column.
        """
        X_host = self._host_inputs(X)
        return X_host, self._host_targets(y, X_host.shape[0])

    def prepare(self, X: Any, y: Any) -> tuple[Array, Array]:
        """Validate ``X`` and ``y`` on the host and move them to the device once.

        Integer labels become one-hot for ``cross_entropy``; a 1-D ``y`` becomes a column.
        """
        if not self.backend.is_device_array(X):
            X_host, y_host = self.prepare_host(X, y)
            return self.backend.asarray(X_host, self.dtype), self.backend.asarray(
                y_host, self.dtype
            )
        Xd = self.prepare_inputs(X)
        if self.backend.is_device_array(y) and self._preprocessing is None:
            if y.ndim != 2 or y.shape != (Xd.shape[0], self.layers[-1]):
                raise ValueError(
                    f"y has shape {tuple(y.shape)}, expected ({Xd.shape[0]}, {self.layers[-1]})"
                )
            return Xd, y
        return Xd, self.backend.asarray(self._host_targets(y, Xd.shape[0]), self.dtype)

    # -- the equations -----------------------------------------------------------------------
    def _fused_network(self) -> Any:
        if not self._fused_checked:
            self._fused = self.backend.fused_network(self.spec)
            self._fused_checked = True
        return self._fused

    def _forward_trace(self, X: Array) -> list[tuple[Array, Array]]:
        """``[(z_1, a_1), ..., (z_L, a_L)]`` for device inputs ``X``."""
        return layer_loop.forward_trace(self.backend, self._params, self._activation_fns, X)

    def forward_device(self, X: Array) -> Array:
        """Outputs (after the output activation) for device inputs, without validation."""
        fused = self._fused_network()
        if fused is not None:
            return fused.forward(self._params, X)
        return self._forward_trace(X)[-1][1]

    def loss_and_gradients(
        self, X: Array, y: Array, *, denom: Any = None, sample_weight: Array | None = None
    ) -> tuple[Array, list[Array]]:
        """Loss summed over the batch and gradients of ``loss_sum / denom``, on the device.

        Parameters
        ----------
        X, y : device arrays
            The batch (see :meth:`prepare`).
        denom : float or device scalar, optional
            What the summed loss is divided by: the number of rows, or the sum of
            ``sample_weight`` if given. Gradient accumulation passes the whole batch's, so
            that micro-batch gradients add up to the batch's.
        sample_weight : device array, optional
            One weight per row: the loss is ``sum_i w_i * loss_i``.

        Notes
        -----
        A batch larger than the backend's :meth:`~Backend.max_batch_rows` is run that many
        rows at a time and summed (weighted or not), so one call never exceeds device memory.
        """
        n = X.shape[0]
        if sample_weight is None:
            denom = float(n if denom is None else denom)
            fused = self._fused_network()
            if fused is not None:
                return fused.loss_and_gradients(self._params, X, y, denom)
        elif denom is None:
            denom = self.weight_total(sample_weight)
        rows = self.backend.max_batch_rows(self.spec)
        if rows is None or n <= rows:
            return self._batch_loss_and_gradients(X, y, denom, sample_weight)
        rows = max(int(rows), 1)
        parts = (
            self._batch_loss_and_gradients(
                X[start : min(start + rows, n), :],
                y[start : min(start + rows, n), :],
                denom,
                None if sample_weight is None else sample_weight[start : min(start + rows, n)],
            )
            for start in range(0, n, rows)
        )
        return sum_loss_and_gradients(self.backend, parts)

    def _batch_loss_and_gradients(
        self, X: Array, y: Array, denom: Any, sample_weight: Array | None
    ) -> tuple[Array, list[Array]]:
        """:meth:`loss_and_gradients` of rows that fit the device at once, generic hooks."""
        trace = self._forward_trace(X)
        z_out, yhat = trace[-1]
        if sample_weight is None:
            loss_sum, grad = self.backend.output_loss_gradient(
                z_out, yhat, y, self._loss_fn, self._activation_fns[-1], denom
            )
            return loss_sum, self._backward(X, trace, grad)
        # A fused kernel knows no weights. dL/dz of a row is linear in the row's upstream
        # gradient, so the unweighted hook with denom 1 scaled row by row by w_i / denom is
        # the weighted gradient, on every backend.
        xp = self.backend.xp
        _, grad = self.backend.output_loss_gradient(
            z_out, yhat, y, self._loss_fn, self._activation_fns[-1], 1.0
        )
        grad = grad * xp.reshape(sample_weight / denom, (-1, 1))
        loss_sum = xp.sum(sample_weight * self._loss_fn.value_rows(z_out, yhat, y, xp=xp))
        return loss_sum, self._backward(X, trace, grad)

    def _backward(self, X: Array, trace: list[tuple[Array, Array]], grad: Array) -> list[Array]:
        """Gradients ``[dW1, db1, ...]`` from the output layer's ``dL/dz``."""
        return layer_loop.backward(self.backend, self._params, self._activation_fns, X, trace, grad)

    def train_step(
        self,
        X: Array,
        y: Array,
        optimizer: Any,
        *,
        accumulate: int = 1,
        alpha: float = 0.0,
        clip_norm: float | None = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """One optimizer step on a device batch; returns the batch's loss sum (device scalar).

        A convenience for ``TrainingStep(model, optimizer, accumulate=..., alpha=...,
        clip_norm=...)(X, y, sample_weight=...)`` (:class:`mlp_accel.training.TrainingStep`,
        where the options are described): how a model is trained lives on the training side,
        and :func:`~mlp_accel.fit` uses that object directly.
        """
        # Imported here: training sits above the model, which must not depend on it.
        from .training.step import TrainingStep

        step = TrainingStep(
            self, optimizer, accumulate=accumulate, alpha=alpha, clip_norm=clip_norm
        )
        return step(X, y, sample_weight=sample_weight)

    def loss_sum(self, X: Array, y: Array, sample_weight: Array | None = None) -> Array:
        """The loss summed over a device batch (weighted by ``sample_weight``, a device vector,
        if given), as a device scalar."""
        trace = self._forward_trace(X)
        z_out, yhat = trace[-1]
        if sample_weight is not None:
            xp = self.backend.xp
            return xp.sum(sample_weight * self._loss_fn.value_rows(z_out, yhat, y, xp=xp))
        return self.backend.loss_sum(z_out, yhat, y, self._loss_fn)

    # -- public numerics on host data ---------------------------------------------------------
    def forward(self, X: Any, *, logits: bool = False) -> Array:
        """Outputs after the output activation, as an array of the backend.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Host data (validated) or a device array of the backend.
        logits : bool, default False
            Return the output layer's pre-activations ``z`` instead (the logits for sigmoid
            and softmax outputs), from which log-probabilities are computed without the
            underflow of ``log(probability)``.
        """
        Xd = self.prepare_inputs(X)
        if logits:
            # A fused kernel hands back only activations, so logits take the generic path.
            return self._forward_trace(Xd)[-1][0]
        return self.forward_device(Xd)

    def gradients(self, X: Any, y: Any) -> tuple[float, list[np.ndarray]]:
        """Mean loss over the batch and its gradients, ordered like :meth:`get_weights`."""
        Xd, yd = self.prepare(X, y)
        loss_sum, grads = self.loss_and_gradients(Xd, yd)
        to_np = self.backend.to_numpy
        return float(to_np(loss_sum)) / Xd.shape[0], [to_np(g) for g in grads]

    def evaluate(self, X: Any, y: Any) -> float:
        """Mean loss on ``(X, y)``."""
        Xd, yd = self.prepare(X, y)
        return float(self.backend.to_numpy(self.loss_sum(Xd, yd))) / Xd.shape[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Output probabilities ``(n, n_out)`` as NumPy, for the classification losses.

        Raises
        ------
        ValueError
            For a ``squared_error`` model, whose outputs are not probabilities.
        """
        if self.loss == "squared_error":
            raise ValueError(
                "predict_proba needs a classification loss; this model uses squared_error"
            )
        return self.backend.to_numpy(self.forward(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predictions as NumPy.

        Class indices for classification (threshold 0.5 per sigmoid output, argmax over a
        softmax), raw outputs for ``squared_error``. A single output gives shape ``(n,)``.
        With :attr:`preprocessing`, the user's class labels, or targets in their units.
        """
        out = self.backend.to_numpy(self.forward(X))
        if self.activations[-1] == "softmax" and self.loss == "cross_entropy":
            out = out.argmax(axis=1)
        else:
            if self.loss == "binary_cross_entropy":
                out = (out > 0.5).astype("int64")
            out = out[:, 0] if out.shape[1] == 1 else out
        pre = self._preprocessing
        return out if pre is None else pre.outputs(out, self.loss)

    # -- copies and files -----------------------------------------------------------------------
    def to(self, backend: BackendLike) -> MLP:
        """A copy of this model on another backend, with the same weights and generator state."""
        rng = make_rng(None)
        rng.bit_generator.state = self.rng.bit_generator.state
        return MLP(
            self.layers,
            self.activations,
            self.loss,
            backend=get_backend(backend),
            dtype=self.dtype,
            seed=rng,
            init=self.init,
            weights=self.get_weights(),
            preprocessing=self._preprocessing,
        )

    def settle_backend(self, rows: int | None, epochs: int, batch_size: int | None) -> None:
        """Settle ``backend="auto"`` for a fit of ``rows`` x ``epochs``: move this model, in
        place, to the backend the cost model picks (once; see :mod:`._auto_request`)."""
        if not self._auto_pending:
            return
        self._auto_pending = False
        choice, target = settle_auto(self.spec, rows, epochs, batch_size, self._backend_options)
        self.backend_choice = choice
        if target is not self.backend:
            weights = self.get_weights()
            self.backend = target
            self._fused, self._fused_checked = None, False
            self._params = [target.asarray(w, self.dtype) for w in weights]

    def copy(self) -> MLP:
        """A deep copy on the same backend."""
        return self.to(self.backend)

    def save(self, path: Any) -> None:
        """Save to an ``.npz`` file (arrays and JSON metadata, no pickle), atomically."""
        from .io import save

        save(self, path)
