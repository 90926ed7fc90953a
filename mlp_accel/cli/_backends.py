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
    from ..backends._auto import RULE, Job, choose_backend
    from ..backends._threads import usable_cpus

    # One story for "auto": a model's (mlp-accel train, ma.fit, the estimators) is decided
    # per job; two jobs show the rule at work.
    available = [name for name, (works, _) in status.items() if works]
    print("auto, for a model (mlp-accel train, ma.fit, the estimators): " + "\n  ".join(RULE))
    for what, job in (
        ("mlp-accel train's default job", Job((2, 4, 3, 1), "float32", 750, 300)),
        ("2-4-3-1 on 10,000,000 rows, 20 epochs", Job((2, 4, 3, 1), "float32", 10**7, 20, 1024)),
    ):
        print(f"  e.g. {what}: {choose_backend(job, available).name}")
    try:
        chosen = get_backend("auto", **options).name
    except RuntimeError as exc:
        chosen = f"none ({exc})"
    print(
        f"get_backend('auto') knows no job: {chosen}, the first that starts of "
        f"{', '.join(AUTO_ORDER)}; MLP_ACCEL_BACKEND overrides both"
    )
    print(
        f"threads: {usable_cpus()} usable CPUs (affinity and cgroup quota) run a batch's fixed "
        "chunks; --threads N sets how many, which changes the speed, never the result"
    )
    return 0
