"""The graph of a network: what it computes (:class:`Network`) and its ONNX nodes
(:func:`build_graph`): standardization, the layers, the activations rendered from the math
table, and the outputs a user reads (labels, probabilities or predictions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.expr.onnx_nodes import OnnxGraph, to_onnx
from ..ops.table import ActivationRow

__all__ = ["INPUT", "Network", "build_graph"]

#: The graph's input: raw features, ``(batch, n_features)``.
INPUT = "X"
_BATCH = "batch"


@dataclass
class Network:
    """What an exported graph computes.

    Parameters
    ----------
    weights : list of ndarray
        ``[W1, b1, W2, b2, ...]``.
    activations : tuple of ActivationRow
        One table row per layer (softmax's has no expression: the ``Softmax`` operator).
    head : {"softmax", "sigmoid", "regression"}
        The outputs: the argmax of a softmax, 0.5-thresholds of sigmoids, or values.
    dtype : str
        The network's own dtype (the export's default).
    classes : ndarray, optional
        Labels of the classes, gathered by the predicted indices.
    two_columns : bool
        A binary sigmoid's probabilities as ``[1 - p, p]`` (scikit-learn's ``predict_proba``).
    x_mean, x_scale : ndarray, optional
        Raw features enter as ``(X - x_mean) / x_scale``.
    y_mean, y_scale : ndarray, optional
        Predictions leave as ``output * y_scale + y_mean``.
    metadata : dict
        JSON-able metadata properties of the model file (feature names, ...).
    """

    weights: list[np.ndarray]
    activations: tuple[ActivationRow, ...]
    head: str
    dtype: str
    classes: np.ndarray | None = None
    two_columns: bool = False
    x_mean: np.ndarray | None = None
    x_scale: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_scale: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        """``[n_in, ..., n_out]``."""
        return [self.weights[0].shape[0], *(w.shape[1] for w in self.weights[0::2])]

    def output_names(self) -> list[str]:
        """The graph's outputs, in order."""
        return ["prediction"] if self.head == "regression" else ["label", "probabilities"]


def build_graph(net: Network, dtype: str) -> Any:
    """The ``GraphProto`` computing ``net`` in ``dtype``."""
    from onnx import helper

    g = OnnxGraph(dtype)
    g.fresh(INPUT)
    a, input_dtype = INPUT, g.dtype
    if net.x_mean is not None:  # in float64, as predict standardizes, then the network's dtype
        input_dtype = np.dtype(np.float64)
        mean, scale = (
            g.tensor(n, v, np.float64)
            for n, v in (("x_mean", net.x_mean), ("x_scale", net.x_scale))
        )
        a = _cast(g, g.op("Div", g.op("Sub", a, mean), scale), np.float64, g.dtype)
    for k, row in enumerate(net.activations):
        W, b = (
            g.tensor(f"{name}{k + 1}", w) for name, w in zip("Wb", net.weights[2 * k : 2 * k + 2])
        )
        z = g.op("Add", g.op("MatMul", a, W), b)
        if row.forward_tree is None:  # softmax: by hand in every dialect, an operator here
            a = g.op("Softmax", z, axis=1)
        else:
            a = to_onnx(row.forward_tree, {"z": z}, g)
    outputs = _heads(net, g, a)
    elem = helper.np_dtype_to_tensor_dtype(input_dtype)
    inputs = [helper.make_tensor_value_info(INPUT, elem, [_BATCH, net.widths[0]])]
    return helper.make_graph(g.nodes, "mlp_accel", inputs, outputs, g.initializers)


def _heads(net: Network, g: OnnxGraph, a: str) -> list[Any]:
    """The output nodes of ``net`` from its output layer's activations ``a``; their infos."""
    from onnx import TensorProto, helper

    n_out = net.widths[-1]
    elem = helper.np_dtype_to_tensor_dtype(g.dtype)

    def column(x: str) -> str:  # (batch, 1) -> (batch,), as predict returns one output
        return g.op("Squeeze", x, g.tensor("axis_1", [1], np.int64))

    if net.head == "regression":
        if net.y_mean is not None:  # in float64, as predict scales (a float64 prediction)
            scale, mean = (
                g.tensor(n, v, np.float64)
                for n, v in (("y_scale", net.y_scale), ("y_mean", net.y_mean))
            )
            a = g.op("Add", g.op("Mul", _cast(g, a, g.dtype, np.float64), scale), mean)
            elem = TensorProto.DOUBLE
        shape = [_BATCH] if n_out == 1 else [_BATCH, n_out]
        g.op("Identity", column(a) if n_out == 1 else a, out="prediction")
        return [helper.make_tensor_value_info("prediction", elem, shape)]
    if net.head == "softmax":
        index = g.op("ArgMax", a, axis=1, keepdims=0)
        probabilities, label_shape = a, [_BATCH]
    else:
        probabilities = a
        if net.two_columns:
            probabilities = g.op("Concat", g.op("Sub", g.const(1.0), a), a, axis=1)
        index = g.op("Cast", g.op("Greater", a, g.const(0.5)), to=TensorProto.INT64)
        index = column(index) if n_out == 1 else index
        label_shape = [_BATCH] if n_out == 1 else [_BATCH, n_out]
    label_elem = TensorProto.INT64
    if net.classes is not None:
        classes, label_elem = _classes(net.classes)
        if len(classes) == 1:  # one class seen in training: it is every prediction
            index = g.op("Mul", index, g.tensor("zero", 0, np.int64))
        index = g.op("Gather", g.tensor("classes", classes, classes.dtype), index, axis=0)
    g.op("Identity", index, out="label")
    g.op("Identity", probabilities, out="probabilities")
    columns = 2 if net.two_columns else n_out
    return [
        helper.make_tensor_value_info("label", label_elem, label_shape),
        helper.make_tensor_value_info("probabilities", elem, [_BATCH, columns]),
    ]


def _classes(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """The labels as an array ONNX holds (text as strings) and its element type."""
    from onnx import TensorProto, helper

    labels = np.asarray(classes.tolist() if classes.dtype == object else classes)
    if labels.dtype.kind in "USO":
        return np.array([str(c) for c in labels.tolist()], dtype=object), TensorProto.STRING
    return labels, helper.np_dtype_to_tensor_dtype(labels.dtype)


def _cast(g: OnnxGraph, x: str, source: Any, target: Any) -> str:
    """``x`` from dtype ``source`` to ``target``; itself where they are one."""
    from onnx import helper

    if np.dtype(source) == np.dtype(target):
        return x
    return g.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(np.dtype(target)))
