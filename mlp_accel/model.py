"""The multilayer perceptron: parameters, forward, backward, predict.

The model holds its parameters as device arrays of its backend and calls only the backend's
hooks and ``backend.xp``; the same code runs on every backend. Host data is validated and
converted once, at the edge (:meth:`MLP.prepare`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._auto_request import auto_options, settle_auto
from ._inference import forward_rows
from ._model_edge import DataEdge
from ._validation import check_dtype, check_layer_spec, check_weights, make_rng
from .activations import get_activation
from .backends import BackendLike, NetworkSpec, get_backend
from .backends import _layer_loop as layer_loop
from .backends._auto import BackendChoice, choose_backend
from .backends._chunks import add_parts, over_chunks, sum_loss_and_gradients
from .initializers import initial_weights
from .losses import get_loss
from .ops.custom import model_activations
from .ops.layout import n_parameters, param_shapes
from .preprocessing import Preprocessing

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MLP"]

Array = Any


class MLP(DataEdge):
    """A fully connected feed-forward network trained by hand-derived backpropagation.

    Parameters
    ----------
    layers : sequence of int
        Widths ``[n_in, hidden..., n_out]``.
    activations : sequence of str or str, optional
        One per weight layer (``len(layers) - 1``), or one name for all: ``identity``,
        ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``gelu``, ``silu``, ``elu``,
        ``softplus``, ``exp`` (the output of ``poisson``), ``softmax`` (output only), or a
        name added with :func:`~mlp_accel.register_activation`. Default: relu hidden layers
        and the output activation that matches ``loss``.
    loss : str, optional
        ``binary_cross_entropy`` (sigmoid output), ``cross_entropy`` (softmax output),
        ``poisson`` (exp output) or ``squared_error`` (any output). Default: the one that
        matches the output activation.
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
        Initial ``[W1, b1, W2, b2, ...]`` (as :meth:`get_weights`) instead of drawn ones
        (copied; the generator is then not advanced).
    custom_activations : mapping, optional
        Formulas of user-defined activations named in ``activations``, ``{name: {"expr":
        ..., "derivative": ... or None}}`` (the form of :attr:`activation_table`); names not
        given here are looked up among those added with
        :func:`~mlp_accel.register_activation`. Nothing is registered: the model keeps the
        formulas it uses in :attr:`activation_table`, saves them with it, and runs them in
        any process.
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
        custom_activations: Mapping[str, Mapping[str, str | None]] | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        resolved, table, names = model_activations(activations, custom_activations)
        try:
            self.layers, kernel, self.loss = check_layer_spec(layers, resolved, loss)
        except ValueError as exc:  # name the user's activations, not their formula keys
            message = str(exc)
            for key, name in names.items():
                message = message.replace(key, name)
            raise ValueError(message) from None
        #: The user-defined activations' formulas, ``{name: {"expr", "derivative"}}``.
        self.activation_table: dict[str, dict[str, str | None]] = table
        #: The names the backends run: a user-defined activation's formula key.
        self._kernel_activations = kernel
        self.activations = tuple(names.get(k, k) for k in kernel)
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
        self._activation_fns = [get_activation(a) for a in self._kernel_activations]
        self._loss_fn = get_loss(self.loss)
        self._fused: Any = None
        self._fused_checked = False
        #: The backend's kernel tier this model runs (``None``: the backend's default until a
        #: fit chooses one for its job).
        self._tier: str | None = None
        #: The backend and kernel tier the last fit ran, and why (``ma.fit`` fixes them
        #: before the first step: :func:`mlp_accel.training.plan.plan_fit`).
        self.code_path: dict[str, str] | None = None
        if weights is None:
            host = initial_weights(self.layers, init, self.rng)
        else:
            host = check_weights(weights, self.weight_shapes, self.dtype)
        self._params = [self.backend.asarray(w, self.dtype) for w in host]

    # -- description ---------------------------------------------------------------------
    @property
    def spec(self) -> NetworkSpec:
        """What a backend's fused kernel would be specialized on."""
        return NetworkSpec(self.layers, self._kernel_activations, self.loss, self.dtype)

    @property
    def n_layers(self) -> int:
        """Number of weight layers."""
        return len(self.layers) - 1

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
        """Return the sum of a device weight vector as a device scalar, 1 where it is 0.

        The gradient of a batch whose weights are all zero is then zero, not NaN.
        """
        xp = self.backend.xp
        total = xp.sum(sample_weight)
        return total + xp.astype(total == 0, total.dtype)

    def set_params(self, params: list[Array]) -> None:
        """Replace the parameters with device arrays (no validation; used by training)."""
        self._params = list(params)

    # -- the equations -----------------------------------------------------------------------
    @property
    def tier(self) -> str | None:
        """The backend's kernel tier this model runs.

        The one its last fit chose, else ``None``: the backend's default for the network.
        """
        return self._tier

    @tier.setter
    def tier(self, tier: str | None) -> None:
        self._tier = tier
        self._fused, self._fused_checked = None, False

    def _fused_network(self) -> Any:
        if not self._fused_checked:
            self._fused = self.backend.fused_network(self.spec, self._tier)
            self._fused_checked = True
        return self._fused

    def _forward_trace(self, X: Array) -> list[tuple[Array, Array]]:
        """``[(z_1, a_1), ..., (z_L, a_L)]`` for device inputs ``X``."""
        return layer_loop.forward_trace(self.backend, self._params, self._activation_fns, X)

    def forward_device(self, X: Array) -> Array:
        """Outputs (after the output activation) for device inputs, without validation.

        On the CPU backends without a fused kernel, a lean plan of the backend's layer
        functions, built once per model: the hooks' arithmetic, so the same bits
        (``mlp_accel._inference``).
        """
        return forward_rows(self, X)

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
        On the CPU backends a batch runs in fixed chunks of rows on the package's worker
        threads, their sums added in chunk order (the same bits with any thread count); on a
        GPU, a batch larger than the backend's :meth:`~Backend.max_batch_rows` is run that
        many rows at a time and summed, so one call never exceeds device memory.
        """
        n = X.shape[0]
        if sample_weight is None:
            denom = float(n if denom is None else denom)
        elif denom is None:
            denom = self.weight_total(sample_weight)
        fused = self._fused_network() if sample_weight is None else None

        def rows(lo: int, hi: int) -> tuple[Array, list[Array]]:
            Xc, yc = (X, y) if hi - lo == n else (X[lo:hi, :], y[lo:hi, :])
            if fused is not None:
                return fused.loss_and_gradients(self._params, Xc, yc, denom)
            weights = None if sample_weight is None else sample_weight[lo:hi]
            return self._batch_loss_and_gradients(Xc, yc, denom, weights)

        if self.backend.chunked:
            widths = tuple(self.layers)
            fold = add_parts(self.backend)
            return over_chunks(self.backend, widths, n, rows, fused is None, fold)
        limit = self.backend.max_batch_rows(self.spec)
        if limit is None or n <= limit:
            return rows(0, n)
        limit = max(int(limit), 1)
        return sum_loss_and_gradients(
            self.backend, (rows(lo, min(lo + limit, n)) for lo in range(0, n, limit))
        )

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
        loss_sum = xp.sum(sample_weight * self._loss_rows(z_out, yhat, y))
        return loss_sum, self._backward(X, trace, grad)

    def _loss_rows(self, z_out: Array, yhat: Array, y: Array) -> Array:
        """Return the loss of each row, which weighting by ``sample_weight`` needs.

        Raises
        ------
        TypeError
            The loss has no per-row values (every loss of the table has them).
        """
        rows = self._loss_fn.value_rows
        if rows is None:
            raise TypeError(f"loss {self.loss!r} has no per-row values for sample_weight")
        return rows(z_out, yhat, y, xp=self.backend.xp)

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
        """Return the loss summed over a device batch, as a device scalar.

        Rows are weighted by ``sample_weight`` (a device vector) if given; the sums of the
        fixed chunks are added in order.
        """

        def rows(lo: int, hi: int) -> Array:
            z_out, yhat = self._forward_trace(X[lo:hi, :])[-1]
            if sample_weight is not None:
                values = self._loss_rows(z_out, yhat, y[lo:hi, :])
                return self.backend.xp.sum(sample_weight[lo:hi] * values)
            return self.backend.loss_sum(z_out, yhat, y[lo:hi, :], self._loss_fn)

        parts = over_chunks(self.backend, tuple(self.layers), X.shape[0], rows)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

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
            custom_activations=self.activation_table,
            preprocessing=self._preprocessing,
        )

    def settle_backend(self, rows: int | None, epochs: int, batch_size: int | None) -> None:
        """Settle ``backend="auto"`` for a fit of ``rows`` x ``epochs``.

        Moves this model, in place and once, to the backend the cost model picks (see
        ``mlp_accel._auto_request``); ``ma.fit`` calls it before fixing the kernel tier.
        """
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

    def to_onnx(self, path: Any = None, **options: Any) -> Any:
        """:func:`mlp_accel.to_onnx` of this model: its ONNX graph, written to ``path`` if given."""
        from .export import to_onnx

        return to_onnx(self, path, **options)
