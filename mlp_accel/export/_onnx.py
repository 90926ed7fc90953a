"""What ties the export to the ``onnx`` package: its lazy import, the opset checks, the model
proto and its file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "require_onnx", "checked_opset", "make_model", "write"]

#: The opset a graph declares unless told otherwise: onnxruntime runs it from 1.12 on.
DEFAULT_OPSET = 17
#: The oldest opset the graphs can declare (``GreaterOrEqual``, per-axis ``Softmax``,
#: ``Squeeze`` with its axes as an input).
MIN_OPSET = 13

_INSTALL = "pip install 'mlp-accel[onnx]'"


def require_onnx() -> Any:
    """The ``onnx`` module.

    Raises
    ------
    ImportError
        ``onnx`` is not installed; the message says how to install it.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package: {_INSTALL} ({exc})") from None
    return onnx


def checked_opset(opset: Any) -> int:
    """``opset`` (``None``: :data:`DEFAULT_OPSET`), checked against what the graphs need and
    what the installed ``onnx`` knows.

    Raises
    ------
    TypeError
        ``opset`` is not an integer.
    ValueError
        ``opset`` is outside ``MIN_OPSET`` to the installed onnx's newest.
    """
    onnx = require_onnx()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not hasattr(opset, "__index__"):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    newest = onnx.defs.onnx_opset_version()
    opset = int(opset)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be from {MIN_OPSET} to {newest} (the newest this onnx "
            f"{onnx.__version__} knows), got {opset}"
        )
    return opset


def make_model(
    graph: Any,
    opset: int,
    doc: str,
    metadata: Mapping[str, Any],
) -> Any:
    """The checked ``ModelProto`` of ``graph``, at the oldest IR version ``opset`` allows (so
    older runtimes load it), with ``metadata`` as JSON metadata properties."""
    from onnx import checker, helper

    from .. import __version__

    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="mlp_accel",
        producer_version=__version__,
        doc_string=doc,
    )
    helper.set_model_props(model, {k: json.dumps(v) for k, v in metadata.items()})
    checker.check_model(model)
    return model


def write(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` atomically (see :mod:`mlp_accel._atomic`)."""
    from .._atomic import atomic_write

    data = model.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
