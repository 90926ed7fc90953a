"""The first-run column: time to the first finished epoch in a fresh process, empty caches.

A warm table hides what a new user meets first: interpreter start, imports and, on Numba, the
compilation of every kernel for a new network shape. Each measurement here starts a new
Python process whose Numba, mlp_accel and CuPy caches point to a new empty directory, and
times it from the spawn to the end of one full-batch training epoch on the case's batch:
interpreter start, imports, building the model (and on Numba compiling its kernels), moving
the batch to the device and the epoch itself. Generating the random batch is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from .cases import LEARNING_RATE, Shape

__all__ = ["FIRST_RUN_NOTE", "first_run"]

#: What the column covers, for the table's notes.
FIRST_RUN_NOTE = (
    "seconds from starting a fresh Python process (empty Numba/mlp_accel/CuPy caches) to the "
    "end of its first full-batch epoch: interpreter start, imports, model build, JIT "
    "compilation, transfer and one epoch (random data generation excluded); one run per "
    "row, so no spread: the JSON splits it into start-up, import and build + epoch"
)

# The child imports only what the measured implementation needs, so a peer's time does not
# include importing mlp_accel, and the library's does not include scikit-learn or PyTorch.
_CHILD = r"""
import json, sys, time
t_enter = time.time()
spec = json.loads(sys.argv[1])
import numpy as np
t0 = time.perf_counter()
rng = np.random.default_rng(spec["seed"])
n, n_in, n_out = spec["batch"], spec["layers"][0], spec["layers"][-1]
X = rng.standard_normal((n, n_in)).astype(spec["dtype"])
if spec["loss"] == "cross_entropy":
    labels = rng.integers(0, n_out, size=n)
    Y = np.zeros((n, n_out), dtype=spec["dtype"])
    Y[np.arange(n), labels] = 1.0
else:
    labels = rng.integers(0, 2, size=n)
    Y = labels.reshape(n, 1).astype(spec["dtype"])
data_seconds = time.perf_counter() - t0
impl = spec["impl"]
t1 = time.perf_counter()
if spec["kind"] == "backend":
    import mlp_accel as ma
    t_import = time.perf_counter()
    model = ma.MLP(spec["layers"], spec["activations"], spec["loss"], backend=impl,
                   dtype=spec["dtype"], seed=spec["seed"])
    ma.fit(model, X, Y, epochs=1, batch_size=None, shuffle=False,
           optimizer=ma.optim.Adam(spec["lr"]))
elif impl == "sklearn":
    from sklearn.neural_network import MLPClassifier
    t_import = time.perf_counter()
    est = MLPClassifier(hidden_layer_sizes=tuple(spec["layers"][1:-1]), solver="adam",
                        alpha=0.0, batch_size=n, learning_rate_init=spec["lr"],
                        shuffle=False, random_state=spec["seed"])
    est.partial_fit(X, labels, classes=np.arange(max(2, n_out)))
else:
    import torch
    t_import = time.perf_counter()
    device = impl.split("-", 1)[1]
    torch.manual_seed(spec["seed"])
    layers, mods = spec["layers"], []
    for k in range(len(layers) - 1):
        mods.append(torch.nn.Linear(layers[k], layers[k + 1]))
        if k < len(layers) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).to(device=device, dtype=getattr(torch, spec["dtype"]))
    xt = torch.from_numpy(X).to(device)
    if spec["loss"] == "cross_entropy":
        loss_fn, yt = torch.nn.CrossEntropyLoss(), torch.from_numpy(labels).to(device)
    else:
        loss_fn, yt = torch.nn.BCEWithLogitsLoss(), torch.from_numpy(Y).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=spec["lr"])
    opt.zero_grad()
    loss_fn(net(xt), yt).backward()
    opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
t_end = time.perf_counter()
print(json.dumps({
    "enter_wall": t_enter,
    "end_wall": time.time(),
    "data_seconds": data_seconds,
    "import_seconds": t_import - t1,
    "build_and_epoch_seconds": t_end - t_import,
}))
"""

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def first_run(
    impl: str,
    kind: str,
    shape: Shape,
    dtype: str,
    *,
    seed: int = 0,
    threads: int | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Time one fresh process from spawn to the end of its first epoch on empty caches.

    Parameters
    ----------
    impl : str
        A backend name (``kind="backend"``), ``"sklearn"``, ``"torch-cpu"`` or
        ``"torch-cuda"`` (``kind="peer"``).
    kind : str
        ``"backend"`` or ``"peer"``.
    shape, dtype, seed
        The case, as in the table.
    threads : int, optional
        Thread limit for the child (BLAS, OpenMP, Numba through their environment variables,
        the only way to set them before the libraries load in a fresh process).
    timeout : float
        Seconds before the child is killed.

    Returns
    -------
    dict
        ``seconds`` (spawn to end of the first epoch, data generation excluded),
        ``startup_seconds`` (spawn to the child's first line), ``import_seconds`` and
        ``build_and_epoch_seconds`` (the child's own clock).

    Raises
    ------
    RuntimeError
        The child failed or timed out; the message holds its last error line.
    ValueError
        ``kind`` is neither ``"backend"`` nor ``"peer"``.
    """
    if kind not in ("backend", "peer"):
        raise ValueError(f"kind must be 'backend' or 'peer', got {kind!r}")
    spec = {
        "impl": impl,
        "kind": kind,
        "layers": list(shape.layers),
        "activations": list(shape.activations),
        "loss": shape.loss,
        "batch": shape.batch,
        "dtype": dtype,
        "seed": seed,
        "lr": LEARNING_RATE,
    }
    with tempfile.TemporaryDirectory(prefix="mlp-accel-firstrun-") as cache:
        env = _child_environment(cache, threads)
        spawn = time.time()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, json.dumps(spec)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"first run of {impl} took over {timeout:.0f} s") from None
    return _child_times(proc, spawn)


def _child_environment(cache: str, threads: int | None) -> dict[str, str]:
    """This process's environment with every JIT cache the child could find warm pointed
    into the empty directory ``cache``, and the thread limit, if any, in the variables the
    libraries read when they load."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")
    env["MLP_ACCEL_CACHE_DIR"] = os.path.join(cache, "mlp_accel")
    env["CUPY_CACHE_DIR"] = os.path.join(cache, "cupy")
    if threads is not None:
        for name in (*_THREAD_VARIABLES, "NUMBA_NUM_THREADS"):
            env[name] = str(threads)
    return env


def _child_times(proc: subprocess.CompletedProcess, spawn: float) -> dict[str, Any]:
    """The result of :func:`first_run` from the finished child, spawned at ``spawn`` (wall
    clock); a failed child raises ``RuntimeError`` with its last error line."""
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "seconds": out["end_wall"] - spawn - out["data_seconds"],
        "startup_seconds": out["enter_wall"] - spawn,
        "import_seconds": out["import_seconds"],
        "build_and_epoch_seconds": out["build_and_epoch_seconds"],
    }
