"""The optimizers of the optimizer table beside their references, in float64 (issue 24).

References: PyTorch's ``AdamW``, ``RMSprop`` and ``Adagrad``; optax's ``lamb`` and ``lars``
with ``jax_enable_x64`` on. mlp_accel's defaults leave biases out of weight decay (and LARS
out of the trust ratio), so each reference is given the same split: PyTorch two parameter
groups (weights, biases), optax the masks. Neither library is a dependency of the package or
of its tests; run this where they are installed, with the package importable::

    PYTHONPATH=$PWD python benchmarks/optimizer_reference.py [--steps 50] [--backends numpy,numba]

For each optimizer variant, with and without weight decay, it prints the largest relative
difference from the reference (``max |ours - ref| / max |ref|`` per tensor, the largest over
the tensors: see :func:`relative_difference`):

- **single**: one update from a fresh state, on the same random parameters and gradients;
- **trajectory**: ``--steps`` full-batch steps of ``ma.fit`` on three networks (the largest
  of the three); the reference takes the same steps from the same initial weights, each on
  the gradient mlp_accel's NumPy model computes at the reference's own weights.

Targets: single within 1e-12 on every backend; trajectories within 1e-12 on numpy and 1e-9
on numba (its kernels contract to FMA and reassociate).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.getcwd())

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import mlp_accel as ma  # noqa: E402

NETWORKS = [
    ([8, 16, 3], ["tanh", "softmax"], "cross_entropy"),
    ([6, 12, 8, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy"),
    ([5, 10, 2], ["gelu", "identity"], "squared_error"),
]
ROWS = 128
WD = 0.05


class TorchReference:
    """A PyTorch optimizer over float64 copies of the parameters: weights and biases in two
    groups, the biases without weight decay unless ``decay_biases``."""

    def __init__(self, cls: Any, params: list[np.ndarray], wd: float, decay_biases: bool, **kw):
        self.tensors = [torch.tensor(p.copy(), dtype=torch.float64) for p in params]
        weights = [t for t, p in zip(self.tensors, params) if p.ndim == 2]
        biases = [t for t, p in zip(self.tensors, params) if p.ndim == 1]
        groups = [
            {"params": weights, "weight_decay": wd},
            {"params": biases, "weight_decay": wd if decay_biases else 0.0},
        ]
        self.opt = cls(groups, **kw)

    def step(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        for t, g in zip(self.tensors, grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        self.opt.step()
        return [t.detach().numpy().copy() for t in self.tensors]


class OptaxReference:
    """An optax transformation over float64 jax arrays."""

    def __init__(self, tx: Any, params: list[np.ndarray]):
        self.tx = tx
        self.params = [jnp.asarray(p) for p in params]
        self.state = tx.init(self.params)

    def step(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        updates, self.state = self.tx.update(
            [jnp.asarray(g) for g in grads], self.state, self.params
        )
        self.params = optax.apply_updates(self.params, updates)
        return [np.asarray(p) for p in self.params]


def _weights_only(params: list[np.ndarray]) -> list[bool]:
    return [p.ndim == 2 for p in params]


def _torch(cls: Any, **kw: Any) -> Callable[..., TorchReference]:
    return lambda params, wd, decay_biases: TorchReference(cls, params, wd, decay_biases, **kw)


#: (label, ours(wd) -> Optimizer, reference(params, wd, decay_biases), decay_biases)
CASES: list[tuple[str, Callable[[float], Any], Callable[..., Any], bool]] = [
    (
        "adamw",
        lambda wd: ma.optim.AdamW(1e-3, weight_decay=wd),
        _torch(torch.optim.AdamW, lr=1e-3, eps=1e-8),
        False,
    ),
    (
        "adamw decay_biases",
        lambda wd: ma.optim.AdamW(1e-3, weight_decay=wd, decay_biases=True),
        _torch(torch.optim.AdamW, lr=1e-3, eps=1e-8),
        True,
    ),
    (
        "rmsprop",
        lambda wd: ma.optim.RMSprop(1e-3, weight_decay=wd),
        _torch(torch.optim.RMSprop, lr=1e-3, alpha=0.99, eps=1e-8),
        False,
    ),
    (
        "rmsprop momentum",
        lambda wd: ma.optim.RMSprop(1e-3, momentum=0.9, weight_decay=wd),
        _torch(torch.optim.RMSprop, lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9),
        False,
    ),
    (
        "rmsprop centered",
        lambda wd: ma.optim.RMSprop(1e-3, centered=True, weight_decay=wd),
        _torch(torch.optim.RMSprop, lr=1e-3, alpha=0.99, eps=1e-8, centered=True),
        False,
    ),
    (
        "rmsprop centered momentum",
        lambda wd: ma.optim.RMSprop(1e-3, momentum=0.9, centered=True, weight_decay=wd),
        _torch(torch.optim.RMSprop, lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9, centered=True),
        False,
    ),
    (
        "adagrad",
        lambda wd: ma.optim.Adagrad(1e-2, weight_decay=wd, initial_accumulator_value=0.1),
        _torch(torch.optim.Adagrad, lr=1e-2, eps=1e-10, initial_accumulator_value=0.1),
        False,
    ),
    (
        "lamb",
        lambda wd: ma.optim.LAMB(1e-3, weight_decay=wd),
        lambda params, wd, db: OptaxReference(
            optax.lamb(1e-3, eps=1e-6, weight_decay=wd, mask=_weights_only(params)), params
        ),
        False,
    ),
    (
        "lamb decay_biases",
        lambda wd: ma.optim.LAMB(1e-3, weight_decay=wd, decay_biases=True),
        lambda params, wd, db: OptaxReference(optax.lamb(1e-3, eps=1e-6, weight_decay=wd), params),
        True,
    ),
    (
        "lars",
        lambda wd: ma.optim.LARS(0.1, weight_decay=wd, trust_coefficient=0.02),
        lambda params, wd, db: OptaxReference(
            optax.lars(
                0.1,
                weight_decay=wd,
                weight_decay_mask=_weights_only(params),
                trust_coefficient=0.02,
                trust_ratio_mask=_weights_only(params),
                momentum=0.9,
            ),
            params,
        ),
        False,
    ),
    (
        "lars nesterov adapt_biases",
        lambda wd: ma.optim.LARS(
            0.1, weight_decay=wd, trust_coefficient=0.02, nesterov=True, adapt_biases=True
        ),
        lambda params, wd, db: OptaxReference(
            optax.lars(
                0.1,
                weight_decay=wd,
                weight_decay_mask=_weights_only(params),
                trust_coefficient=0.02,
                momentum=0.9,
                nesterov=True,
            ),
            params,
        ),
        False,
    ),
]


def relative_difference(ours: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """``max |ours - ref| / max |ref|`` per tensor, the largest over the tensors (an all-zero
    reference tensor must be matched exactly: it counts as infinite otherwise).

    Per element, ``|ours - ref| / |ref|`` grows without bound where a weight crosses zero
    over a trajectory (1e-11 at a weight of 1e-6 among weights of 0.05, with the tensor's
    difference at 7e-16 of its scale), so the scale is the tensor's.
    """
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        diff = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        scale = float(np.max(np.abs(np.asarray(b))))
        if scale == 0:
            if diff > 0:
                return float("inf")
            continue
        worst = max(worst, diff / scale)
    return worst


def single_update(case: tuple, wd: float, backend: str) -> float:
    """One update from a fresh state on random parameters and gradients of network 0."""
    _, ours, reference, decay_biases = case
    rng = np.random.default_rng(0)
    shapes = [s.shape for s in ma.MLP(*NETWORKS[1], backend="numpy").params]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [rng.standard_normal(s) for s in shapes]
    be = ma.get_backend(backend)
    opt = ours(wd)
    got = opt.step(
        [be.asarray(p.copy(), "float64") for p in params],
        [be.asarray(g.copy(), "float64") for g in grads],
        be,
    )
    want = reference(params, wd, decay_biases).step(grads)
    return relative_difference([be.to_numpy(p) for p in got], want)


def _data(k: int) -> tuple[np.ndarray, np.ndarray]:
    widths, _, loss = NETWORKS[k]
    rng = np.random.default_rng(10 + k)
    X = rng.standard_normal((ROWS, widths[0]))
    if loss == "cross_entropy":
        return X, rng.integers(0, widths[-1], size=ROWS)
    if loss == "binary_cross_entropy":
        return X, rng.integers(0, 2, size=(ROWS, widths[-1])).astype(float)
    return X, rng.standard_normal((ROWS, widths[-1]))


def trajectory(case: tuple, wd: float, backend: str, steps: int, reference_end: dict) -> float:
    """``steps`` full-batch steps on each network; the largest difference of the three."""
    _, ours, reference, decay_biases = case
    worst = 0.0
    for k, (widths, acts, loss) in enumerate(NETWORKS):
        X, y = _data(k)
        model = ma.MLP(widths, acts, loss, backend=backend, dtype="float64", seed=k)
        ma.fit(model, X, y, epochs=steps, optimizer=ours(wd), shuffle=False, progress=False)
        key = (case[0], wd, k)
        if key not in reference_end:
            helper = ma.MLP(widths, acts, loss, backend="numpy", dtype="float64", seed=k)
            params = helper.get_weights()
            ref = reference(params, wd, decay_biases)
            for _ in range(steps):
                helper.set_weights(params)
                params = ref.step(helper.gradients(X, y)[1])
            reference_end[key] = params
        worst = max(worst, relative_difference(model.get_weights(), reference_end[key]))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--backends", default="numpy,numba")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    torch.set_num_threads(1)
    header = ["optimizer", "weight decay"]
    header += [f"single {b}" for b in backends] + [f"{args.steps} steps {b}" for b in backends]
    print(f"torch {torch.__version__}, jax {jax.__version__}, optax {optax.__version__}, float64")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ends: dict = {}
    for case in CASES:
        for wd in (0.0, WD):
            singles = [single_update(case, wd, b) for b in backends]
            paths = [trajectory(case, wd, b, args.steps, ends) for b in backends]
            cells = [case[0], f"{wd:g}", *(f"{x:.1e}" for x in singles + paths)]
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
