"""The lean NumPy reference and the peers (scikit-learn, PyTorch), doing the same step.

Every output labels these as ``(ref)`` or ``(peer)``. scikit-learn and PyTorch are imported
only when their peer is built; PyTorch is never a dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..initializers import initial_weights
from .cases import LEARNING_RATE, HostData, Shape
from .machine import limit_torch_threads


# -- the reference and the peers --------------------------------------------------------------
class LeanNumpyMLP:
    """A minimal hand-written NumPy MLP step: the floor for the library's abstraction cost.

    The same mathematics as :class:`~mlp_accel.model.MLP` with the same initial weights
    (ReLU hidden layers; sigmoid + binary cross-entropy, softmax + cross-entropy or identity
    + squared error at the output; losses from logits; Adam), written as one would by hand:
    no backend, no hooks, in-place ReLU and Adam. It computes the loss sum each step, as
    ``train_step`` does.
    """

    def __init__(self, shape: Shape, dtype: str, data: HostData, seed: int = 0) -> None:
        if any(a != "relu" for a in shape.activations[:-1]):
            raise ValueError("the lean reference implements ReLU hidden layers only")
        weights = initial_weights(shape.layers, "glorot", np.random.default_rng(seed))
        self.W = [np.ascontiguousarray(w, dtype=dtype) for w in weights[0::2]]
        self.b = [np.ascontiguousarray(b, dtype=dtype) for b in weights[1::2]]
        self.params = [*self.W, *self.b]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self.output = shape.activations[-1]
        self.X = np.ascontiguousarray(data.X, dtype=dtype)
        self.Y = np.ascontiguousarray(data.Y, dtype=dtype)

    def _hidden(self, X: np.ndarray) -> list[np.ndarray]:
        acts = [X]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            z = acts[-1] @ W
            z += b
            np.maximum(z, 0, out=z)  # ReLU in place: a > 0 exactly where z > 0
            acts.append(z)
        return acts

    def forward(self) -> np.ndarray:
        """Outputs after the output activation."""
        z = self._hidden(self.X)[-1] @ self.W[-1] + self.b[-1]
        if self.output == "sigmoid":
            return 0.5 * (np.tanh(0.5 * z) + 1.0)
        if self.output == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return z

    def train_step(self) -> float:
        """One Adam step on the whole batch; returns the loss sum."""
        X, Y = self.X, self.Y
        acts = self._hidden(X)
        z = acts[-1] @ self.W[-1]
        z += self.b[-1]
        if self.output == "sigmoid":
            yhat = 0.5 * (np.tanh(0.5 * z) + 1.0)
            loss = np.sum(np.maximum(z, 0) - Y * z + np.log1p(np.exp(-np.abs(z))))
        elif self.output == "softmax":
            zmax = z.max(axis=1, keepdims=True)
            e = np.exp(z - zmax)
            s = e.sum(axis=1, keepdims=True)
            yhat = e / s
            loss = np.sum(Y * (zmax + np.log(s) - z))
        else:
            yhat = z
            loss = 0.5 * np.sum((z - Y) ** 2)
        dz = (yhat - Y) * (1.0 / X.shape[0])
        n_layers = len(self.W)
        gW: list[Any] = [None] * n_layers
        gb: list[Any] = [None] * n_layers
        for k in range(n_layers - 1, -1, -1):
            gW[k] = acts[k].T @ dz
            gb[k] = dz.sum(axis=0)
            if k:
                dz = dz @ self.W[k].T
                dz *= acts[k] > 0
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = LEARNING_RATE / (1.0 - beta1**self.t)
        c2 = 1.0 - beta2**self.t
        for p, g, m, v in zip(self.params, [*gW, *gb], self.m, self.v):
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * (g * g)
            p -= step * m / (np.sqrt(v / c2) + eps)
        return float(loss)


class PeerUnavailable(RuntimeError):
    """A peer library is not installed, or cannot run this case here; the message says why."""


@dataclass
class Peer:
    """Another library doing the same step, clearly labelled as a peer in every output."""

    name: str
    label: str
    device: str
    train: Callable[[], None]
    infer: Callable[[], None]
    #: Waits for the peer's device; the calls already do unless built with
    #: ``synchronize=False``, where the caller synchronizes around a block of calls.
    synchronize: Callable[[], None] = lambda: None


def sklearn_peer(shape: Shape, dtype: str, data: HostData, seed: int = 0) -> Peer:
    """scikit-learn's MLPClassifier (MLPRegressor for squared error) doing the same step.

    ``partial_fit`` on the whole batch (``batch_size`` = batch, no shuffling) is one Adam
    step on the same layers with ReLU hidden layers and no L2 penalty; scikit-learn picks the
    matching output (logistic, softmax or identity) itself, and computes in the input dtype.
    Its per-call input validation is part of what it costs a user, so it is timed.

    Raises
    ------
    PeerUnavailable
        scikit-learn is missing, or the case has an activation it cannot express.
    """
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as exc:
        raise PeerUnavailable(f"scikit-learn is not installed ({exc})") from None
    hidden = shape.activations[:-1]
    if len(set(hidden)) != 1 or hidden[0] not in ("relu", "tanh", "identity"):
        raise PeerUnavailable("scikit-learn needs one activation for every hidden layer")
    kwargs = dict(
        hidden_layer_sizes=tuple(shape.layers[1:-1]),
        activation=hidden[0],
        solver="adam",
        alpha=0.0,
        batch_size=shape.batch,
        learning_rate_init=LEARNING_RATE,
        shuffle=False,
        random_state=seed,
    )
    X = np.ascontiguousarray(data.X, dtype=dtype)
    if shape.loss == "squared_error":
        est: Any = MLPRegressor(**kwargs)
        y = np.ascontiguousarray(data.Y, dtype=dtype)
        y = y[:, 0] if y.shape[1] == 1 else y
        est.partial_fit(X, y)

        def infer() -> None:
            est.predict(X)
    else:
        est = MLPClassifier(**kwargs)
        y = data.labels
        est.partial_fit(X, y, classes=np.arange(max(2, shape.layers[-1])))

        def infer() -> None:
            est.predict_proba(X)

    def train() -> None:
        est.partial_fit(X, y)

    return Peer("sklearn", "scikit-learn partial_fit (peer)", "cpu", train, infer)


def torch_peer(
    shape: Shape,
    dtype: str,
    data: HostData,
    device: str = "cpu",
    seed: int = 0,
    *,
    synchronize: bool = True,
) -> Peer:
    """PyTorch eager doing the same step: ``nn.Sequential`` of Linear + ReLU, Adam.

    The loss is computed from logits (``BCEWithLogitsLoss``, ``CrossEntropyLoss``) like the
    library's; inference applies the output activation. On CUDA the batch is on the GPU and
    every call synchronizes, unless ``synchronize=False``: then the calls only launch their
    work and the caller waits with :attr:`Peer.synchronize` around a block of calls (as
    :func:`~mlp_accel.bench.train_call` with ``synchronize=False``). PyTorch is never a
    dependency: this raises when it is absent.

    Raises
    ------
    PeerUnavailable
        PyTorch is not installed, or ``device="cuda"`` and no CUDA device is visible.
    """
    try:
        import torch
    except ImportError:
        raise PeerUnavailable("PyTorch is not installed (it is never a dependency)") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise PeerUnavailable("PyTorch sees no CUDA device")
    limit_torch_threads(torch)
    torch.manual_seed(seed)
    tdtype = getattr(torch, dtype)
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    modules: list[Any] = []
    for k, (n_in, n_out) in enumerate(zip(shape.layers[:-1], shape.layers[1:])):
        modules.append(torch.nn.Linear(n_in, n_out))
        if k < len(shape.layers) - 2:
            modules.append(acts[shape.activations[k]]())
    net = torch.nn.Sequential(*modules).to(device=device, dtype=tdtype)
    X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=dtype)).to(device)
    if shape.loss == "cross_entropy":
        loss_fn: Any = torch.nn.CrossEntropyLoss()
        y = torch.from_numpy(data.labels.astype(np.int64)).to(device)
        out_fn: Callable[[Any], Any] = lambda z: torch.softmax(z, dim=1)  # noqa: E731
    elif shape.loss == "binary_cross_entropy":
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y = torch.from_numpy(np.ascontiguousarray(data.Y, dtype=dtype)).to(device)
        out_fn = torch.sigmoid
    else:
        loss_fn = torch.nn.MSELoss()
        y = torch.from_numpy(np.ascontiguousarray(data.Y, dtype=dtype)).to(device)
        out_fn = lambda z: z  # noqa: E731
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    device_sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync = device_sync if synchronize else (lambda: None)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(X), y).backward()
        optimizer.step()
        sync()

    def infer() -> None:
        with torch.inference_mode():
            out_fn(net(X))
        sync()

    label = f"PyTorch eager {device} (peer)"
    return Peer(f"torch-{device}", label, device, train, infer, synchronize=device_sync)
