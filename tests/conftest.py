"""Shared fixtures: every numeric test runs on every backend that starts here.

``MLP_ACCEL_TEST_BACKENDS=numpy,numba`` restricts the set (CI and the GPU check use it).
A registered backend that cannot start here is reported as skipped, with the reason.

Every backend runs as users run it: no switch changes its behaviour for the session.
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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
