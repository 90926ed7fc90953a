"""Same call, same bits: a fit's weights depend on its inputs only.

Each case runs in fresh processes: on an empty kernel cache, again on the warm cache with
one worker thread, and once more beside a busy process; every run must give one hash.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    import mlp_accel as ma
    backend, threads, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    if threads != "default":
        ma.set_threads(int(threads))
    if ":" in backend:
        name, tier = backend.split(":")
        backend = (name, {"tier": tier})
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6000, 3)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > X[:, 2]).astype(np.float32)
    if kind == "estimator":
        from mlp_accel.sklearn import MLPClassifier
        est = MLPClassifier((16, 16), max_iter=3, batch_size=2048, random_state=1,
                            backend=backend).fit(X, y)
        weights = [*est.coefs_, *est.intercepts_]
    else:
        model = ma.MLP([3, 16, 16, 1], backend=backend, seed=1, loss="binary_cross_entropy")
        ma.fit(model, X, y, epochs=3, batch_size=None, optimizer="adam")
        ma.fit(model, X, y, epochs=1, batch_size=2048, optimizer="adam")
        weights = model.get_weights()
    data = b"".join(np.ascontiguousarray(w).tobytes() for w in weights)
    print(hashlib.sha256(data).hexdigest())
    """
)

CASES = [
    ("numpy", "model"),
    ("auto", "model"),
    ("numba", "model"),
    ("numba:generic", "model"),
    ("numba:layers", "model"),
    ("numba", "estimator"),
]


def _hash(backend: str, threads: str, kind: str, cache: str) -> str:
    env = {**os.environ, "MLP_ACCEL_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache + "-numba"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend, threads, kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


@pytest.mark.parametrize("backend, kind", CASES, ids=[f"{b}-{k}" for b, k in CASES])
def test_one_hash_across_caches_threads_and_load(backend, kind, tmp_path):
    if backend.startswith("numba"):
        pytest.importorskip("numba")
    cache = str(tmp_path / "cache")
    hashes = {
        "empty cache": _hash(backend, "default", kind, cache),
        "warm cache, one thread": _hash(backend, "1", kind, cache),
    }
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        hashes["beside a busy process, 3 threads"] = _hash(backend, "3", kind, cache)
    finally:
        busy.kill()
        busy.wait()
    assert len(set(hashes.values())) == 1, hashes
