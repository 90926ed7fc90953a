"""Shared fixtures: every numeric test runs on every backend that starts here.

``MLP_ACCEL_TEST_BACKENDS=numpy,numba`` restricts the set (CI and the GPU check use it).
A registered backend that cannot start here is reported as skipped, with the reason.

On numba the shared backend runs the per-layer kernels, loaded once per session before any
test, and never swaps in a fused network kernel (generic or specialized): a swap in the
middle of a test would change results in the last bits at a moment set by the machine's load,
and a fused kernel per shape is most of the suite's compile time. The fused kernels have their
own tests (test_numba_backend.py: every activation and loss against NumPy float64;
test_numba_generic.py: the generic kernel; test_numba_compile.py: the background swap); the
kernels they need start compiling in the background as the session starts.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# Captured stderr is not a terminal, where the progress bar stays off; the tests that read
# the bar need it drawn (test_progress_bar_is_off_in_pipes unsets this).
os.environ.setdefault("MLP_ACCEL_PROGRESS", "always")

from mlp_accel.backends import BACKENDS, BackendUnavailableError, get_backend


def _selected_backends() -> list[str]:
    wanted = os.environ.get("MLP_ACCEL_TEST_BACKENDS")
    if wanted:
        return [n.strip() for n in wanted.split(",") if n.strip()]
    return list(BACKENDS)


@pytest.fixture(params=_selected_backends())
def backend_name(request: pytest.FixtureRequest) -> str:
    """Name of a backend that works here (others skip with the reason)."""
    name = request.param
    try:
        get_backend(name)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    return name


@pytest.fixture(scope="session", autouse=True)
def _numba_per_layer_kernels(request: pytest.FixtureRequest) -> None:
    if "numba" not in _selected_backends():
        return
    try:
        backend = get_backend("numba")
    except BackendUnavailableError:
        return
    from mlp_accel.backends import _numba_compile

    backend.specialize_after = None
    backend.fuse_generic = False  # nor the generic fused kernel (test_numba_generic.py's)
    # Per-layer kernels compile on first use (only those a test runs), so a numba test never
    # passes on NumPy's fallback while its kernels are still compiling in the background.
    backend.background_layers = False
    # Test modules that compile many kernels name them (``precompile_tasks``): they are handed
    # to the background compiler as the session starts and compile on the second core beside
    # the tests before them; a test waits for (or loads) what it needs.
    modules = {id(item.module): item.module for item in request.session.items if item.module}
    for module in sorted(modules.values(), key=lambda m: m.__name__):
        for task in getattr(module, "precompile_tasks", lambda: [])():
            _numba_compile.submit(task)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules that name kernels to precompile last: the background compiler then has
    the rest of the suite to compile them in, instead of those tests waiting for it."""
    compiling = {
        id(item.module)
        for item in items
        if item.module is not None and hasattr(item.module, "precompile_tasks")
    }
    items.sort(key=lambda item: id(item.module) in compiling)  # stable: file order otherwise


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
