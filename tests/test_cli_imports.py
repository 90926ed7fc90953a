"""The command's layout: each subcommand imports only what it needs, and the CLI stays readable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlp_accel.cli

# Runs ``python -m mlp_accel ARGS`` in this process, as the console does, then reports the exit
# status and which bench modules got imported.
_RUN_AND_LIST_BENCH_MODULES = """
import json, runpy, sys
sys.argv = ["mlp-accel", *json.loads(sys.argv[1])]
try:
    runpy.run_module("mlp_accel", run_name="__main__", alter_sys=True)
    rc = 0
except SystemExit as exc:
    rc = exc.code
loaded = sorted(m for m in sys.modules if m == "mlp_accel.bench" or m.startswith(
    ("mlp_accel.bench.", "mlp_accel.cli._bench")))
print(json.dumps({"rc": rc, "bench": loaded}))
"""


def _run(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_BENCH_MODULES, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_and_predict_do_not_import_the_bench_package(tmp_path):
    model = str(tmp_path / "m.npz")
    train = ("train", "--epochs", "2", "--no-progress", "--backend", "numpy", "--save", model)
    trained = _run(*train)
    assert trained == {"rc": 0, "bench": []}
    features = tmp_path / "x.csv"
    features.write_text("0.1,0.2\n-0.3,0.4\n")
    predicted = _run("predict", "--model", model, "--data", str(features), "--backend", "numpy")
    assert predicted == {"rc": 0, "bench": []}


def test_bench_imports_its_parser_when_named():
    # The counterpart of the test above: the probe does see the bench package when it is used.
    shown = _run("bench", "--help")
    assert shown["rc"] == 0
    assert "mlp_accel.bench" in shown["bench"] and "mlp_accel.cli._bench" in shown["bench"]


def test_bench_help_and_usage_errors_come_from_its_own_parser():
    proc = subprocess.run(
        [sys.executable, "-m", "mlp_accel", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "--sweep-batches" in proc.stdout and "mnist" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "mlp_accel", "bench", "--dtype", "float16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[0] == "usage: mlp-accel bench [options]"
    assert len(lines) == 2 and "--dtype" in lines[1]


def test_every_subcommand_parses_after_a_lazy_build():
    parser = mlp_accel.cli.build_parser()
    assert parser.parse_args(["train", "--epochs", "3"]).epochs == 3
    assert parser.parse_args(["predict", "--model", "m", "--data", "d"]).model == "m"
    assert parser.parse_args(["backends"]).command == "backends"
    assert parser.parse_args(["bench", "--quick"]).quick is True


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > limit
    ]


@pytest.mark.parametrize(
    "path", sorted(Path(mlp_accel.cli.__file__).parent.glob("*.py")), ids=lambda p: p.name
)
def test_cli_modules_and_functions_are_short(path):
    """No CLI module over 500 lines, no function over 80: each part can be read in one sitting."""
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    assert n_lines <= 500, f"{path.name} has {n_lines} lines"
    assert _long_functions(path, 80) == []
