"""The CuPy backend as a package: :class:`CupyBackend` (``backend.py``), the device and its
start-up (``device.py``), kernel launches (``launch.py``), the fused network
(``network.py``), host-to-device staging (``staging.py``) and the CUDA kernel sources
rendered from the math table (``kernels/``). :class:`CupyBackend` is imported on first
access.
"""

from typing import Any

__all__ = ["CupyBackend"]


def __getattr__(name: str) -> Any:
    if name == "CupyBackend":
        from .backend import CupyBackend

        return CupyBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
