"""Whether the BLAS library runs kernels for an older CPU than the one it runs on.

OpenBLAS picks its kernels from the CPU at load time unless ``OPENBLAS_CORETYPE`` names a core;
a core older than the CPU (``Haswell``, AVX2, on an AVX-512 CPU) leaves the wide units idle:
one 4096x1024x1024 float32 product measured 105-245 GFLOP/s that way against 200-450 with the
CPU's own kernels. The bench's header warns of it, since every figure of the run inherits it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["blas_warnings", "cpu_vector_level", "core_vector_level"]

#: Vector instruction sets, weakest first; a level is an index into this tuple.
LEVELS = ("SSE", "AVX", "AVX2", "AVX-512")

#: OpenBLAS core types (lower case) by the widest vector instructions their kernels use.
_CORE_LEVELS: dict[str, int] = {
    **dict.fromkeys(
        ("katmai", "coppermine", "northwood", "prescott", "core2", "penryn", "dunnington"), 0
    ),
    **dict.fromkeys(("nehalem", "atom", "opteron", "barcelona", "nano", "bobcat"), 0),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller"), 1),
    **dict.fromkeys(("haswell", "zen", "excavator", "atomc3000"), 2),
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), 3),
}

#: /proc/cpuinfo flags that mark each level.
_CPU_FLAGS = (("avx512f", 3), ("avx2", 2), ("avx", 1))


def cpu_vector_level(flags: Iterable[str] | None = None) -> int | None:
    """The widest vector level of this CPU (an index into :data:`LEVELS`), None if unknown.

    ``flags`` defaults to the first ``flags`` line of ``/proc/cpuinfo`` (Linux).
    """
    if flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                line = next((x for x in f if x.startswith("flags")), "")
        except OSError:
            return None
        flags = line.partition(":")[2].split()
    present = set(flags)
    if not present:
        return None
    return next((level for flag, level in _CPU_FLAGS if flag in present), 0)


def core_vector_level(core: str | None) -> int | None:
    """The vector level of an OpenBLAS core type's kernels; None for a name not known here."""
    return None if not core else _CORE_LEVELS.get(core.strip().lower())


def blas_warnings(
    pools: Iterable[Mapping[str, Any]],
    flags: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Warnings for OpenBLAS libraries running kernels below this CPU's vector level.

    Parameters
    ----------
    pools : iterable of mapping
        threadpoolctl's records (``internal_api``, ``architecture``, ``filepath`` or
        ``library``).
    flags : iterable of str, optional
        The CPU's feature flags; default read from ``/proc/cpuinfo``.
    environ : mapping, optional
        The environment; default ``os.environ``.

    Returns
    -------
    list of str
        One line per library held below the CPU, naming the cause when
        ``OPENBLAS_CORETYPE`` is set; empty when nothing is known to be wrong.
    """
    environ = os.environ if environ is None else environ
    cpu = cpu_vector_level(flags)
    if cpu is None:
        return []
    forced = environ.get("OPENBLAS_CORETYPE")
    warnings = []
    openblas = [p for p in pools if p.get("internal_api") == "openblas"]
    for pool in openblas:
        core = pool.get("architecture") or forced
        level = core_vector_level(core)
        if level is None or level >= cpu:
            continue
        library = os.path.basename(str(pool.get("library") or pool.get("filepath") or "openblas"))
        cause = (
            f"OPENBLAS_CORETYPE={forced} is set: unset it"
            if forced
            else "this OpenBLAS build has no kernels for the CPU"
        )
        warnings.append(
            f"{library} runs {core} kernels ({LEVELS[level]}) on a CPU with {LEVELS[cpu]}; "
            f"matrix products may run at half the rate or less ({cause})"
        )
    level = core_vector_level(forced)
    if not openblas and level is not None and level < cpu:
        warnings.append(
            f"OPENBLAS_CORETYPE={forced} ({LEVELS[level]}) is set on a CPU with {LEVELS[cpu]}: "
            "an OpenBLAS loaded later will run below the CPU; unset it"
        )
    return warnings
