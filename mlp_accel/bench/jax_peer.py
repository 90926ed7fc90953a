"""JAX doing the same step, the whole Adam step under ``jax.jit``: XLA fuses it as a compiler
does, so it is the strongest CPU peer. JAX is never a dependency; the peer is built only where
it is installed (``pip install "jax[cpu]"``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..initializers import initial_weights
from .cases import LEARNING_RATE, HostData, Shape
from .peers import Peer, PeerUnavailable

__all__ = ["jax_peer"]


def jax_peer(shape: Shape, dtype: str, data: HostData, seed: int = 0) -> Peer:
    """JAX on the CPU: forward, loss from logits, ``jax.grad`` and Adam in one jitted step.

    The same initial weights as the library's model (one NumPy generator), ReLU or tanh
    hidden layers, the loss of the case from logits, Adam in PyTorch's form with the bench's
    learning rate. Each call waits for its result (``block_until_ready``). float64 needs
    ``jax_enable_x64``, which is set for this process when a float64 case asks for it.

    Raises
    ------
    PeerUnavailable
        JAX is not installed, or a hidden activation JAX's peer does not write.
    """
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise PeerUnavailable("JAX is not installed (it is never a dependency)") from None
    acts = {"relu": jax.nn.relu, "tanh": jnp.tanh}
    if any(a not in acts for a in shape.activations[:-1]):
        raise PeerUnavailable("JAX's peer writes ReLU and tanh hidden layers only")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    weights = initial_weights(shape.layers, "glorot", np.random.default_rng(seed))
    params = [jnp.asarray(w, dtype=dtype) for w in weights]
    X = jnp.asarray(data.X, dtype=dtype)
    out = shape.activations[-1]
    if shape.loss == "cross_entropy":
        Y = jnp.asarray(np.eye(shape.layers[-1])[data.labels], dtype=dtype)
    else:
        Y = jnp.asarray(data.Y, dtype=dtype)
    hidden = [acts[a] for a in shape.activations[:-1]]

    def logits(p: list[Any], x: Any) -> Any:
        for k, f in enumerate(hidden):
            x = f(x @ p[2 * k] + p[2 * k + 1])
        return x @ p[-2] + p[-1]

    def loss(p: list[Any]) -> Any:
        z = logits(p, X)
        if shape.loss == "binary_cross_entropy":
            rows = jnp.maximum(z, 0) - Y * z + jnp.log1p(jnp.exp(-jnp.abs(z)))
        elif shape.loss == "cross_entropy":
            rows = -Y * jax.nn.log_softmax(z, axis=1)
        else:
            rows = 0.5 * (z - Y) ** 2
        return jnp.sum(rows) / X.shape[0]

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def step(p: list[Any], m: list[Any], v: list[Any], t: Any) -> tuple:
        g = jax.grad(loss)(p)
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g)]
        c1, c2 = 1 - beta1**t, 1 - beta2**t
        p = [
            pi - LEARNING_RATE * (mi / c1) / (jnp.sqrt(vi / c2) + eps)
            for pi, mi, vi in zip(p, m, v)
        ]
        return p, m, v

    @jax.jit
    def infer_fn(p: list[Any]) -> Any:
        z = logits(p, X)
        if out == "sigmoid":
            return jax.nn.sigmoid(z)
        if out == "softmax":
            return jax.nn.softmax(z, axis=1)
        return z

    state = {"p": params, "m": [jnp.zeros_like(q) for q in params], "t": 0}
    state["v"] = [jnp.zeros_like(q) for q in params]

    def train() -> None:
        state["t"] += 1
        t = jnp.asarray(state["t"], dtype=dtype)
        state["p"], state["m"], state["v"] = step(state["p"], state["m"], state["v"], t)
        jax.block_until_ready(state["p"])

    def infer() -> None:
        jax.block_until_ready(infer_fn(state["p"]))

    return Peer("jax-cpu", "JAX jit cpu (peer)", "cpu", train, infer)
