"""ONNX export of a model or a fitted estimator: :func:`to_onnx`.

The graph computes what ``predict`` and ``predict_proba`` do, from raw features:

- **input** ``X``: features, ``(batch, n_features)``, the batch dimension symbolic, in the
  export's dtype (float32 or float64; float64 for a model that standardizes its features);
- **outputs** of a classifier (a softmax with cross-entropy, or sigmoids with binary
  cross-entropy): ``label``, as ``predict`` returns it (``(batch,)``: the user's labels where
  the model has them, int64 class indices otherwise; several sigmoid outputs without labels,
  multilabel ones, a ``(batch, n_outputs)`` 0/1 int64 matrix), and ``probabilities``, as
  ``predict_proba`` returns them, ``(batch, n_columns)``;
- **output** of any other model: ``prediction``, ``(batch,)`` for one output, else
  ``(batch, n_outputs)``, in the export's dtype (float64 for a model that scales targets).

A model saved by ``mlp-accel train`` (any model with a ``preprocessing``) exports with its
standardization at the graph's start, in float64 as ``predict`` computes it, and its class
labels (or target scaling) at its end: the ONNX model takes the CSV's raw feature columns, in
the model's order (``feature_names`` in the file's metadata), and returns what
``mlp-accel predict`` prints.

Every activation is rendered from the math table (``mlp_accel/ops/expr/onnx_nodes.py``), so
user-defined ones export too, with ``log1p``, ``expm1`` and float64 ``erf`` built to keep
their accuracy. The file declares opset :data:`DEFAULT_OPSET` (onnxruntime 1.12 and later)
unless ``opset=`` names another from :data:`MIN_OPSET` to the newest the installed ``onnx``
knows, and the oldest IR version that opset allows. Needs ``pip install 'mlp-accel[onnx]'``.
"""

from __future__ import annotations

import os
import typing

from ._onnx import DEFAULT_OPSET, MIN_OPSET

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["to_onnx", "DEFAULT_OPSET", "MIN_OPSET"]


def to_onnx(
    model: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    dtype: Any = None,
    opset: int | None = None,
) -> Any:
    """The ONNX model of an :class:`~mlp_accel.MLP` or a fitted estimator, written to ``path``.

    Parameters
    ----------
    model : MLP, MLPClassifier or MLPRegressor
        A model (its ``preprocessing`` included) or a fitted estimator
        of :mod:`mlp_accel.sklearn`.
    path : path-like, optional
        Where to write the ``.onnx`` file, atomically (a crash leaves an earlier file whole).
    dtype : {"float32", "float64"}, optional
        The graph's input and arithmetic; default: the model's dtype.
    opset : int, optional
        The ONNX opset the graph declares, default :data:`DEFAULT_OPSET`.

    Returns
    -------
    onnx.ModelProto
        The model, checked by ``onnx.checker``. Input ``X``; outputs ``label`` and
        ``probabilities`` for classifiers, ``prediction`` otherwise (see the module's
        description for shapes and types).

    Raises
    ------
    ImportError
        ``onnx`` is not installed (``pip install 'mlp-accel[onnx]'``).
    TypeError
        ``model`` is not a model or an estimator, or ``opset`` is not an integer.
    ValueError
        An unknown ``dtype``, an ``opset`` out of range, or an estimator that is not fitted.

    Examples
    --------
    >>> import mlp_accel as ma
    >>> model = ma.MLP([4, 8, 3], ["relu", "softmax"], seed=0)
    >>> proto = ma.to_onnx(model)  # doctest: +SKIP
    >>> [o.name for o in proto.graph.output]  # doctest: +SKIP
    ['label', 'probabilities']
    """
    from .._validation import check_dtype
    from ._network import build_graph
    from ._onnx import checked_opset, make_model, require_onnx, write
    from ._sources import describe

    require_onnx()
    opset = checked_opset(opset)
    net = describe(model)
    dtype = net.dtype if dtype is None else check_dtype(dtype)
    graph = build_graph(net, dtype)
    outputs = ", ".join(net.output_names())
    doc = f"mlp_accel {'-'.join(map(str, net.widths))} {dtype}: input X, outputs {outputs}"
    proto = make_model(graph, opset, doc, net.metadata)
    if path is not None:
        write(proto, path)
    return proto


# The namespace holds __all__ and modules only: the __future__ import binds a name too.
del annotations
