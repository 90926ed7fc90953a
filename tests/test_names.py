"""One name-lookup policy for every registry, and the library's hands off the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel.activations import get_activation
from mlp_accel.initializers import initial_weights
from mlp_accel.losses import get_loss
from mlp_accel.optim import get_optimizer
from mlp_accel.schedules import get_schedule


def _lookups():
    """(kind, look up a name, a valid name in odd case and spacing, the valid names sorted)."""
    rng = np.random.default_rng(0)
    return [
        ("activation", get_activation, " ReLU ", "elu, exp, gelu, identity, leaky_relu, relu"),
        ("loss", get_loss, "Squared_Error", "binary_cross_entropy, cross_entropy"),
        ("optimizer", lambda n: get_optimizer(n, lr=0.1), " ADAM", "adam, sgd"),
        ("schedule", lambda n: get_schedule(n, 10), "Cosine ", "constant, cosine, step"),
        ("init", lambda n: initial_weights([2, 1], n, rng), "HE", "glorot, he, normal"),
        ("backend", ma.get_backend, " NumPy ", "auto, cupy, numba, numpy"),
    ]


@pytest.mark.parametrize(("kind", "get", "odd", "valid"), _lookups(), ids=lambda v: str(v)[:12])
def test_every_registry_follows_one_lookup_policy(kind, get, odd, valid):
    get(odd)  # strip().lower()
    with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; valid [a-z]+: ") as info:
        get("nope")
    # sorted, and every built-in name listed (other tests may have registered activations)
    listed = str(info.value).split(": ", 1)[1].split(", ")
    assert listed == sorted(listed)
    assert set(valid.split(", ")) <= set(listed)
    with pytest.raises(TypeError, match=kind):
        get(3)


def test_backend_options_that_are_no_options_are_named():
    with pytest.raises(
        TypeError, match="backend 'numpy' takes no option 'tf32'; its options: none"
    ):
        ma.get_backend("numpy", tf32=True)
    with pytest.raises(TypeError, match=r"process.*set_threads"):
        ma.get_backend("numba", threads=2)
    with pytest.raises(TypeError, match="not to a started NumpyBackend"):
        ma.get_backend(ma.get_backend("numpy"), device=0)
    with pytest.raises(TypeError, match=r"\(name, \{option: value\}\)"):
        ma.get_backend(("numpy",))
    with pytest.raises(TypeError, match="hashable"):
        ma.get_backend("cupy", device=[0])


def test_backend_options_match_the_constructors():
    """BACKEND_OPTIONS is declared so that checking options imports no backend: hold it to
    the constructors' keyword parameters."""
    import importlib
    import inspect

    from mlp_accel.backends import BACKEND_OPTIONS, BACKENDS

    for name, target in BACKENDS.items():
        module, _, cls = target.partition(":")
        klass = getattr(importlib.import_module(module), cls)
        params = [
            p.name
            for p in inspect.signature(klass).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert tuple(params) == BACKEND_OPTIONS[name], name


def _environment_writes(path: Path) -> list[str]:
    """``os.environ[...] = ...``, ``os.environ.update/setdefault/pop``, ``os.putenv`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "os.environ":
                found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("os.putenv", "os.unsetenv") or func.startswith(
                ("os.environ.update", "os.environ.setdefault", "os.environ.pop")
            ):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_the_library_configures_nothing_through_the_environment():
    package = Path(ma.__file__).parent
    writes = [w for p in sorted(package.rglob("*.py")) for w in _environment_writes(p)]
    # The one exception takes back what threadpoolctl's import sets, leaving the environment
    # as it was (tests/test_process_hygiene.py checks the effect in a fresh process).
    undo = 'os.environ.pop("KMP_DUPLICATE_LIB_OK", None)'
    source = (package / "backends" / "_threads.py").read_text()
    assert source.count(undo) == 1
    line = source[: source.index(undo)].count("\n") + 1
    assert writes == [f"_threads.py:{line}"]
