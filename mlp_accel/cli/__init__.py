"""The ``mlp-accel`` command: train, predict, export, backends, bench, warmup.

Every expected failure (bad input, unknown names, unusable backends, unreadable files, a
diverging run) becomes one line on stderr and a non-zero exit, with no traceback.

Each subcommand is a module of this package with ``add_arguments(parser, backend_option)`` and
``run(args) -> int``, listed once in ``_SUBCOMMANDS``. A module is imported only when its
subcommand is parsed or run, so a command pays for its own imports only: ``predict`` and
``train`` never load the bench package.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# EXIT_USAGE, _apply_gpu_options and _throughput are reachable from the package itself, where
# the tests and the benchmark scripts look them up.
from ._dask import _dask_client
from ._options import EXIT_USAGE as EXIT_USAGE
from ._options import _apply_gpu_options as _apply_gpu_options
from ._options import _Parser
from ._train_report import _throughput as _throughput

__all__ = ["main", "build_parser"]

PROG = "mlp-accel"
EXIT_ERROR = 1

# name -> (module of this package, keywords of its subparser), in the order of --help. A new
# subcommand is a module with ``add_arguments(parser, backend_option)`` and ``run(args)``, and
# one entry here.
_SUBCOMMANDS: dict[str, tuple[str, dict[str, str]]] = {
    "train": (
        "_train",
        dict(
            usage="%(prog)s [options]",
            help="train a model (default: the tutorial's circles problem)",
            description="Train a model, print its train and test scores, optionally save it.",
        ),
    ),
    "predict": (
        "_predict",
        dict(
            usage="%(prog)s --model FILE --data FILE [options]",
            help="predict with a saved model",
            description="Print (or write) a saved model's predictions for the rows of a file.",
        ),
    ),
    "export": (
        "_export",
        dict(
            usage="%(prog)s --model FILE --onnx FILE [--dtype float32|float64] [--opset N]",
            help="export a saved model to ONNX, with its preprocessing (needs '.[onnx]')",
            description=(
                "Write a saved model as an ONNX file that takes raw features and returns the "
                "labels and probabilities (or predictions) `predict` prints."
            ),
        ),
    ),
    "backends": (
        "_backends",
        dict(
            usage="%(prog)s [--device N] [--tf32]",
            help="list the backends, whether they work here, and why not",
        ),
    ),
    "bench": (
        "_bench",
        dict(
            usage="%(prog)s [options]",
            help="measure training and inference throughput per backend, beside peers",
            description=(
                "Time a training step (forward + backward + Adam) and inference of the one "
                "model on every backend that works here, beside a lean NumPy reference and, "
                "where installed, scikit-learn and PyTorch (peers); print one table."
            ),
        ),
    ),
    "warmup": (
        "_warmup",
        dict(
            usage="%(prog)s (--layers N,N,... | --model FILE) [options]",
            help="compile the numba kernels of a network ahead of use (for a deployment)",
        ),
    ),
}


def _module(name: str) -> Any:
    return importlib.import_module(f".{_SUBCOMMANDS[name][0]}", __name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlp-accel``.

    A subcommand's arguments are added when that subcommand is first parsed or its help shown,
    so building the parser imports no subcommand's module.
    """
    from .. import __version__
    from ..backends import BACKENDS

    # The usage names no subcommand, so that it stays one line however many there are; the
    # error of an unknown one and --help list them.
    parser = _Parser(
        prog=PROG,
        usage="%(prog)s [-h] [--version] COMMAND ...",
        description="Train multilayer perceptrons on NumPy, Numba or CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, prog=PROG)
    # Read now, as the parser is built, not when a subcommand's arguments are added.
    backend_option = dict(
        default=os.environ.get("MLP_ACCEL_BACKEND", "auto"),
        choices=("auto", *BACKENDS),
        help="backend (default: $MLP_ACCEL_BACKEND or auto)",
    )
    for name, (_, keywords) in _SUBCOMMANDS.items():
        sub.add_parser(name, add_arguments=_arguments_of(name, backend_option), **keywords)
    return parser


def _arguments_of(name: str, backend_option: dict[str, Any]) -> Callable[[Any], None]:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _module(name).add_arguments(parser, backend_option)

    return add_arguments


def _runner(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return _module(name).run(args)

    return run


def _cmd_train(args: argparse.Namespace) -> int:
    # The cluster factory is looked up here, at call time, so that it can be replaced in one
    # place (the tests substitute a dying cluster).
    return _module("train").run(args, dask_client=_dask_client)


# name -> run(args) -> exit status: a subcommand's ``run``, imported when it is called.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: _runner(name) for name in _SUBCOMMANDS
}
_COMMANDS["train"] = _cmd_train


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlp-accel``; returns the exit status.

    Every failure is one line on stderr: usage errors exit 2 (after the usage line), other
    errors 1, an interrupt 130. No exception escapes as a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_gpu_options(args)
        # Overflow in a diverging run is reported once, by fit's divergence check, not as a
        # stream of NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): not an error to report. Point stdout at devnull
        # so the interpreter's final flush does not fail again (Python's documented recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        sys.stderr.write(f"{PROG}: error: out of memory{detail}\n")
        return EXIT_ERROR
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        _write_error(str(exc) or type(exc).__name__)
        return EXIT_ERROR
    except Exception as exc:  # the CLI promises no tracebacks
        # An unexpected class (KeyError from a malformed file, ...): name it, as a bug report
        # would need.
        _write_error(f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _write_error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")


if __name__ == "__main__":
    raise SystemExit(main())
