"""mlp_accel: multilayer perceptrons with hand-derived backprop on NumPy, Numba or CuPy.

The equations are written once against an array-API namespace; a backend supplies the
namespace and optional fused kernels. Importing this package imports neither numba nor cupy.
"""

from . import callbacks, io, optim, schedules
from .backends import Backend, BackendUnavailableError, available_backends, get_backend
from .backends._threads import set_threads, threads, usable_cpus
from .export import to_onnx
from .io import load
from .model import MLP
from .ops.table import register_activation
from .preprocessing import Preprocessing
from .train import History, TrainingDivergedError, fit

__all__ = [
    "MLP",
    "Preprocessing",
    "fit",
    "load",
    "History",
    "TrainingDivergedError",
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "get_backend",
    "set_threads",
    "threads",
    "usable_cpus",
    "register_activation",
    "to_onnx",
    "optim",
    "io",
    "schedules",
    "callbacks",
    "__version__",
]

__version__ = "0.1.0"
