"""``mlp-accel backends``: the backends, whether they work here, and why not."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import _add_gpu_options

__all__ = ["add_arguments", "run"]


def add_arguments(b: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add the arguments of ``backends`` to its parser ``b``."""
    # --backend is accepted and ignored: it is listed, not chosen, here.
    b.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    _add_gpu_options(b)


def run(args: argparse.Namespace) -> int:
    from ..backends import AUTO_ORDER, backend_status, get_backend

    options = args.backend[1] if isinstance(args.backend, tuple) else {}
    status = backend_status(**options)
    for name, (works, info) in status.items():
        if works:
            details = ", ".join(f"{k} {v}" for k, v in info.items())
            print(f"{name:6s}  yes  {details}")
        else:
            print(f"{name:6s}  no   {info}")
    try:
        chosen = get_backend("auto", **options).name
    except RuntimeError as exc:
        chosen = f"none ({exc})"
    print(
        f"auto -> {chosen} for get_backend('auto')  (order: {', '.join(AUTO_ORDER)}; "
        "override with MLP_ACCEL_BACKEND)"
    )
    from ..backends._auto import RULE
    from ..backends._threads import usable_cpus

    print("models on auto: " + "\n  ".join(RULE))
    print(f"threads: {usable_cpus()} usable CPUs (affinity and cgroup quota); --threads N fixes")
    return 0
