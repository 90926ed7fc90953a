"""The Numba backend as a package: :class:`NumbaBackend` (``backend.py``), its kernel
generators (``kernels.py``, ``layer_sources.py``, ``output.py``, ``generic.py``,
``fused.py``, ``unrolled.py``, ``vecmath.py``), the network objects the model runs
(``networks.py``) and what compiles when (``tasks.py``, ``paths.py``).

Importing the package imports nothing heavy: ``paths`` (which ``auto`` reads) needs no
Numba, and :class:`NumbaBackend` is imported on first access.
"""

from typing import Any

__all__ = ["NumbaBackend"]


def __getattr__(name: str) -> Any:
    if name == "NumbaBackend":
        from .backend import NumbaBackend

        return NumbaBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
