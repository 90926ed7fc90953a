"""What every subcommand's parser shares: the parser class, argument types, GPU options.

The parser class adds a subcommand's arguments on first use, so that building the whole
``mlp-accel`` parser imports no subcommand's module: ``predict`` never loads the bench package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are the (one-line) usage and one error line, exit 2.

    ``add_arguments``, when given, is called once with the parser before it first parses or
    formats help: a subcommand's arguments (and the imports they need) cost nothing until that
    subcommand is named.
    """

    def __init__(
        self,
        *args: Any,
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments

    def _complete(self) -> None:
        add_arguments, self._add_arguments = self._add_arguments, None
        if add_arguments is not None:
            add_arguments(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # The subcommands action parses a subcommand's rest with this method, so the arguments
        # are in place before argparse looks for them.
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(self.format_usage())
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _fields(text: str, what: str) -> list[str]:
    """The comma-separated fields of ``text``, refusing an empty one by its position (an empty
    field is a typo, and dropping it would build another network than the one written)."""
    fields = [field.strip() for field in text.split(",")]
    for position, field in enumerate(fields, 1):
        if not field:
            raise argparse.ArgumentTypeError(
                f"field {position} of {text!r} is empty: expected {what} separated by single commas"
            )
    return fields


def _int_list(text: str) -> list[int]:
    fields = _fields(text, "integers")
    try:
        return [int(t) for t in fields]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _name_list(text: str) -> list[str]:
    return _fields(text, "names")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _float_in(low: float, high: float, low_open: bool, high_open: bool, what: str) -> Any:
    """An argparse type: a finite float in the interval, refusing NaN and inf by name."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        # NaN fails every comparison, so it must be refused explicitly, not by the bounds.
        ok = (
            np.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_float = _float_in(0.0, np.inf, True, True, "a positive finite number")
_non_negative_float = _float_in(0.0, np.inf, False, True, "a non-negative finite number")
_open_fraction = _float_in(0.0, 1.0, True, True, "a fraction strictly between 0 and 1")
_momentum = _float_in(0.0, 1.0, False, True, "in [0, 1)")


def _add_threads_option(parser: Any, help: str) -> None:
    """``--threads N``, a positive thread count, for every subcommand that limits threads.

    One definition, so that a count of 0 or less is a usage error everywhere and not, in one
    subcommand, an error raised after minutes of measuring.
    """
    parser.add_argument("--threads", type=_positive_int, metavar="N", help=help)


#: The largest seed every consumer takes: scikit-learn's ``random_state`` (the datasets, the
#: split) stops at 2**32 - 1, where NumPy's generators take any non-negative integer.
MAX_SEED = 2**32 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def _add_seed_option(parser: Any, help: str) -> None:
    """``--seed N`` (default 0), a seed that NumPy and scikit-learn both take."""
    parser.add_argument("--seed", type=_seed, default=0, metavar="N", help=help)


def _add_header_option(parser: Any) -> None:
    """``--header`` / ``--no-header``: whether a CSV file's first row is a header (default:
    told from the row, refused where it cannot be told; never a question, never a lost row)."""
    parser.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the CSV file's first row is a header (default: a header when its "
        "feature columns are not numbers, data when they are; an error when it cannot be told)",
    )


def _add_gpu_options(parser: Any) -> None:
    parser.add_argument(
        "--device",
        type=int,  # a negative index is refused, with the option named, when it is applied
        default=None,
        metavar="N",
        help="GPU index for the cupy backend (default: $MLP_ACCEL_DEVICE or 0)",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="let cupy's float32 matrix products use TF32 tensor cores: faster, but inputs "
        "rounded to 10 mantissa bits (default: off)",
    )


def _apply_gpu_options(args: argparse.Namespace) -> None:
    """Hand --device and --tf32 to the backend request: ``args.backend`` becomes ``(name,
    options)``, which ``MLP``, ``load`` and ``get_backend`` take (no environment is written)."""
    options: dict[str, Any] = {}
    device = getattr(args, "device", None)
    if device is not None:
        if device < 0:
            raise ValueError(f"--device must be a GPU index (0, 1, ...), got {device}")
        options["device"] = device
    if getattr(args, "tf32", False):
        options["tf32"] = True
    if options:
        name = getattr(args, "backend", None) or "auto"
        if str(name).strip().lower() not in ("auto", "cupy"):
            raise ValueError(f"--device and --tf32 apply to the cupy backend, not to {name!r}")
        args.backend = (name, options)


def _check_output_path(path: str | None, what: str) -> None:
    """Fail before measuring, not after minutes of it, when an output cannot be written."""
    if path is None:
        return
    if not path:
        raise ValueError(f"{what}: the path is empty")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path} is a directory; name a file in it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: directory {directory} does not exist")


def _check_distinct_paths(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse an output (``{option: path}``, ``None`` for one not given) that names the file of
    another output or of an input: the later write would destroy the earlier, or an output
    its input. Inputs may share a file; a stream (``/dev/null``, a FIFO) may be named twice."""
    from .._atomic import is_stream

    seen = {_file_key(path): what for what, path in inputs.items() if path}
    for what, path in outputs.items():
        if not path or is_stream(path):
            continue
        key = _file_key(path)
        if key in seen:
            raise ValueError(f"{seen[key]} and {what} name the same file, {path}")
        seen[key] = what


def _file_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))
