"""The public namespaces hold what they export (``__all__``) and modules, nothing more.

A name imported for the implementation (``typing.Any``, a validation helper, the
``__future__`` feature) would otherwise show in ``dir()``, tab completion and the API
reference as if it were part of the API.
"""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest

import mlp_accel

PUBLIC = [
    "mlp_accel",
    "mlp_accel.optim",
    "mlp_accel.schedules",
    "mlp_accel.callbacks",
    "mlp_accel.sklearn",
    "mlp_accel.export",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_namespace_holds_only_all_and_modules(name: str) -> None:
    module = importlib.import_module(name)
    extra = [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and attr not in module.__all__
        and not isinstance(value, types.ModuleType)
    ]
    assert extra == [], f"{name} leaks {extra}"


@pytest.mark.parametrize("name", PUBLIC)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_package_ships_py_typed() -> None:
    # PEP 561: without the marker, type checkers ignore the package's annotations.
    assert (Path(mlp_accel.__file__).parent / "py.typed").is_file()
    pyproject = (Path(mlp_accel.__file__).parents[1] / "pyproject.toml").read_text()
    assert '"py.typed"' in pyproject
