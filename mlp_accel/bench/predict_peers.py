"""Other libraries predicting with the library's weights: the peers of the inference rows.

Each builder takes an :class:`~mlp_accel.model.MLP` (its weights, layers and activations)
and a host batch, and returns a zero-argument call that computes the probabilities as a
user of that library would, from a NumPy array to a NumPy array:

- :func:`onnxruntime_predictor`: the model exported by :func:`mlp_accel.export.to_onnx`, run
  by an onnxruntime ``InferenceSession`` on the CPU;
- :func:`sklearn_predictor`: scikit-learn's ``MLPClassifier.predict_proba`` with the same
  weights (its per-call input validation included, as its users pay it);
- :func:`torch_predictor`: PyTorch eager, ``nn.Sequential`` of ``Linear`` layers under
  ``torch.inference_mode``, from ``torch.from_numpy`` to ``.numpy()``.

Each is imported only when its peer is built and none is a dependency: a missing library
raises :class:`~mlp_accel.bench.peers.PeerUnavailable` with the reason. Thread counts are set
through each library's own API, for this process only, and restored by the caller's
``restore`` stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops.table import CLASSIFICATION_LOSSES
from .peers import PeerUnavailable

__all__ = ["onnxruntime_predictor", "sklearn_predictor", "torch_predictor", "PREDICTORS"]

Predict = Callable[[], np.ndarray]


def _classifier(model: Any) -> None:
    """Raise :class:`PeerUnavailable` for a model the peers cannot mirror."""
    if model.loss not in CLASSIFICATION_LOSSES:
        raise PeerUnavailable(f"predict_proba needs a classifier; the model's loss is {model.loss}")
    if model.preprocessing is not None:
        raise PeerUnavailable("the inference peers take models without preprocessing")


def onnxruntime_predictor(
    model: Any, X: np.ndarray, threads: int, restore: contextlib.ExitStack
) -> Predict:
    """onnxruntime on the model's ONNX export: ``session.run(["probabilities"], {"X": X})``.

    The session runs on the CPU with ``intra_op_num_threads = threads`` (1 for the
    single-threaded rows), one inter-op thread and sequential execution; everything else is
    onnxruntime's default, as a user gets it (its pool's threads spin while waiting, as they
    do by default).

    Raises
    ------
    PeerUnavailable
        ``mlp_accel.export``, ``onnx`` or ``onnxruntime`` is not available here.
    """
    _classifier(model)
    try:
        from ..export import to_onnx  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise PeerUnavailable(
            f"mlp_accel.export (the ONNX exporter) is unavailable: {exc}"
        ) from None
    try:
        import onnxruntime as ort
    except ImportError:
        raise PeerUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    try:
        proto = to_onnx(model)
    except ImportError as exc:
        raise PeerUnavailable(f"the ONNX export needs onnx: {exc}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    output = "probabilities" if "probabilities" in names else names[-1]
    feed = {session.get_inputs()[0].name: X}

    def predict() -> np.ndarray:
        return session.run([output], feed)[0]

    return predict


def sklearn_predictor(
    model: Any, X: np.ndarray, threads: int, restore: contextlib.ExitStack
) -> Predict:
    """scikit-learn's ``MLPClassifier.predict_proba`` with the model's weights.

    The estimator is :func:`mlp_accel.sklearn.to_sklearn`'s (its fitted attributes set from
    the weights), so nothing is trained; scikit-learn computes in the weights' dtype. Its
    BLAS threads are the caller's limit (``threadpoolctl``).

    Raises
    ------
    PeerUnavailable
        scikit-learn is not installed, or the network is not one scikit-learn's classifier
        has (its activations, its outputs).
    """
    _classifier(model)
    try:
        import sklearn.neural_network  # noqa: F401
    except ImportError as exc:
        raise PeerUnavailable(f"scikit-learn is not installed ({exc})") from None
    from ..sklearn import to_sklearn

    try:
        clf = to_sklearn(model)
    except ValueError as exc:  # what scikit-learn's MLP cannot express, named
        raise PeerUnavailable(str(exc)) from None

    def predict() -> np.ndarray:
        return clf.predict_proba(X)

    return predict


def torch_predictor(
    model: Any, X: np.ndarray, threads: int, restore: contextlib.ExitStack
) -> Predict:
    """PyTorch eager on the CPU with the model's weights, ``threads`` intra-op threads.

    ``torch.set_num_threads(threads)`` for this process, put back by ``restore``.

    Raises
    ------
    PeerUnavailable
        PyTorch is not installed, or an activation its peer does not write.
    """
    _classifier(model)
    try:
        import torch
    except ImportError:
        raise PeerUnavailable("PyTorch is not installed (it is never a dependency)") from None
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    if any(a not in acts for a in model.activations[:-1]):
        raise PeerUnavailable("the PyTorch peer writes ReLU, tanh and sigmoid hidden layers")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    restore.callback(torch.set_num_threads, before)
    weights = model.get_weights()
    modules: list[Any] = []
    for k in range(len(weights) // 2):
        W, b = weights[2 * k], weights[2 * k + 1]
        linear = torch.nn.Linear(*W.shape, dtype=getattr(torch, model.dtype))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if k < len(weights) // 2 - 1:
            modules.append(acts[model.activations[k]]())
    net = torch.nn.Sequential(*modules).eval()
    out: Callable[[Any], Any] = (
        (lambda z: torch.softmax(z, dim=1)) if model.activations[-1] == "softmax" else torch.sigmoid
    )

    def predict() -> np.ndarray:
        with torch.inference_mode():
            return out(net(torch.from_numpy(X))).numpy()

    return predict


#: The peers of the inference rows, by the name their rows carry.
PREDICTORS: dict[str, Callable[..., Predict]] = {
    "onnxruntime": onnxruntime_predictor,
    "sklearn": sklearn_predictor,
    "torch-cpu": torch_predictor,
}
