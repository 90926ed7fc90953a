"""``mlp-accel export``: a saved model as an ONNX file, with its preprocessing, so that the
ONNX model takes raw features and returns what ``mlp-accel predict`` prints."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import _check_distinct_paths, _check_output_path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser, backend_option: dict[str, Any]) -> None:
    """Add export's arguments to its parser ``p`` (it takes no backend)."""
    p.add_argument("--model", required=True, metavar="FILE", help="a model saved by train --save")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    p.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float64"),
        help="the graph's input and arithmetic (default: the model's)",
    )
    p.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: 17)")


def run(args: argparse.Namespace) -> int:
    import mlp_accel as ma

    from ..export import to_onnx
    from ..export._onnx import require_onnx

    require_onnx()  # before the model file is read: say what to install first
    _check_output_path(args.onnx, "--onnx")
    _check_distinct_paths({"--onnx": args.onnx}, {"--model": args.model})
    model = ma.load(args.model, backend="numpy")
    proto = to_onnx(model, args.onnx, dtype=args.dtype, opset=args.opset)
    outputs = ", ".join(o.name for o in proto.graph.output)
    print(
        f"wrote {args.onnx}: input X ({model.layers[0]} raw features), outputs {outputs}; "
        f"opset {proto.opset_import[0].version}, {args.dtype or model.dtype}"
    )
    return 0
