"""Rewrite the results table in ``benchmarks/README.md`` from a fresh ``mlp-accel bench`` run.

Usage::

    python benchmarks/update_readme_table.py [mlp-accel bench options]

The options are those of ``mlp-accel bench`` (default ``--quick``); the table, the machine
header and the command itself are written between the ``bench-table`` markers, so the README
always says how its numbers were made. Nothing in the table is typed by hand.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path

from mlp_accel.cli import main
from mlp_accel.io import atomic_write

README = Path(__file__).with_name("README.md")
START = "<!-- bench-table:start -->"
END = "<!-- bench-table:end -->"


def render(options: list[str]) -> str:
    """Run the bench with ``options`` and return the markdown block for the README."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--markdown", *options])
    if code != 0:
        raise SystemExit(code)
    command = shlex.join(["python", "benchmarks/update_readme_table.py", *options])
    return f"Regenerated with `{command}`:\n\n{out.getvalue().strip()}\n"


def update(readme: Path, block: str) -> None:
    """Replace the text between the markers of ``readme`` with ``block`` (atomically)."""
    text = readme.read_text()
    try:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"{readme} lacks the markers {START} ... {END}") from None
    new = f"{head}{START}\n{block}{END}{tail}"
    atomic_write(readme, lambda f: f.write(new.encode("utf-8")))


if __name__ == "__main__":
    options = sys.argv[1:] or ["--quick"]
    update(README, render(options))
    print(f"updated {README}")
