"""What a model does to raw data at its edge: :class:`Preprocessing`.

``mlp-accel train`` standardizes the features on the training split and numbers the class
labels ``0..k-1`` before the network sees them. A model saved by it carries these steps (the
scaler's mean and scale, the classes, the target scaling of a regression, the CSV header's
column names), and :func:`mlp_accel.load` attaches them to the loaded model as
:attr:`MLP.preprocessing <mlp_accel.MLP.preprocessing>`: its ``predict``, ``predict_proba``,
``forward``, ``evaluate``, ``gradients`` and :func:`~mlp_accel.fit` then take raw features and
the user's labels (or targets) and ``predict`` returns them, exactly what ``mlp-accel predict``
prints, which calls the same ``predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .ops.table import CLASSIFICATION_LOSSES

__all__ = ["Preprocessing", "KEYS"]

#: The extra arrays of a model file that hold its preprocessing (see :func:`mlp_accel.io.save`).
KEYS = ("x_mean", "x_scale", "classes", "y_mean", "y_scale", "feature_names", "target_name")


def _floats(value: Any, name: str, size: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.shape != (size,):
        raise ValueError(
            f"{name} must be {size} real number(s), got shape {arr.shape} of {arr.dtype}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if name.endswith("scale") and not np.all(arr > 0):
        raise ValueError(f"{name} must be positive")
    return arr


class Preprocessing:
    """Feature standardization, class labels and target scaling applied at a model's edge.

    Parameters
    ----------
    x_mean, x_scale : array-like of shape (n_features,), optional
        Raw features ``X`` reach the network as ``(X - x_mean) / x_scale`` (both or neither;
        the scale positive).
    classes : array-like of shape (n_classes,), optional
        The user's class labels, sorted and distinct: label ``classes[i]`` is the network's
        class ``i``. ``fit`` takes these labels, ``predict`` returns them (for the
        classification losses), ``predict_proba``'s columns follow this order.
    y_mean, y_scale : array-like of shape (n_outputs,), optional
        A regression network fits ``(y - y_mean) / y_scale``; ``predict`` returns
        ``output * y_scale + y_mean`` in the target's units.
    feature_names : sequence of str, optional
        The training file's column names, in the model's order (as scikit-learn's
        ``feature_names_in_``): ``mlp-accel predict`` matches a CSV header's columns by them.
    target_name : str, optional
        The training file's target column name (ignored in a file given to predict).
    """

    def __init__(
        self,
        x_mean: Any = None,
        x_scale: Any = None,
        classes: Any = None,
        y_mean: Any = None,
        y_scale: Any = None,
        feature_names: Sequence[str] | None = None,
        target_name: str | None = None,
    ) -> None:
        self.x_mean, self.x_scale = x_mean, x_scale
        self.classes = None if classes is None else np.asarray(classes)
        self.y_mean, self.y_scale = y_mean, y_scale
        self.feature_names = None if feature_names is None else [str(n) for n in feature_names]
        self.target_name = None if target_name is None else str(target_name)

    def __repr__(self) -> str:
        parts = []
        if self.x_mean is not None:
            parts.append("standardized features")
        if self.classes is not None:
            parts.append(f"classes {', '.join(map(str, self.classes))}")
        if self.y_mean is not None:
            parts.append("scaled targets")
        if self.feature_names is not None:
            parts.append(f"features {self.feature_names}")
        return f"Preprocessing({', '.join(parts)})"

    # -- checks ------------------------------------------------------------------------------
    def checked(self, n_features: int, n_outputs: int, loss: str) -> Preprocessing:
        """This preprocessing with its arrays validated against a model.

        Raises
        ------
        ValueError
            An array of the wrong shape, NaN or inf, a scale that is not positive, classes
            that are not distinct or do not fit the output layer, or duplicate feature names.
        """
        for a, b in (("x_mean", "x_scale"), ("y_mean", "y_scale")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"{a} and {b} go together: one is missing")
        if self.x_mean is not None:
            self.x_mean = _floats(self.x_mean, "x_mean", n_features)
            self.x_scale = _floats(self.x_scale, "x_scale", n_features)
        if self.y_mean is not None:
            if self.classes is not None:
                raise ValueError("a model has class labels or a target scaling, not both")
            self.y_mean = _floats(self.y_mean, "y_mean", n_outputs)
            self.y_scale = _floats(self.y_scale, "y_scale", n_outputs)
        if self.classes is not None:
            self._check_classes(n_outputs, loss)
        names = self.feature_names
        if names is not None:
            if len(names) != n_features:
                raise ValueError(f"{len(names)} feature names for {n_features} features")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"feature names {repeated} occur more than once")
        return self

    def _check_classes(self, n_outputs: int, loss: str) -> None:
        classes = self.classes
        assert classes is not None
        if classes.ndim != 1 or classes.dtype.kind not in "biufU" or len(classes) < 2:
            raise ValueError(f"classes must be 2 or more numbers or names, got {classes!r}")
        if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)):
            raise ValueError("classes contain NaN or inf")
        if len(np.unique(classes)) != len(classes) or not np.all(classes[:-1] < classes[1:]):
            raise ValueError("classes must be sorted and distinct")
        expected = {"cross_entropy": n_outputs, "binary_cross_entropy": 2 if n_outputs == 1 else 0}
        if loss in expected and len(classes) != expected[loss]:
            raise ValueError(
                f"{len(classes)} classes do not fit an output layer of {n_outputs} unit(s) "
                f"with {loss}"
            )

    # -- the edge ------------------------------------------------------------------------------
    def inputs(self, X: Any, n_features: int, dtype: str) -> np.ndarray:
        """Raw host features, validated, standardized in float64, in the model's ``dtype``."""
        from ._validation import check_inputs

        if self.x_mean is None:
            return check_inputs(X, n_features, dtype)
        X = check_inputs(X, n_features, "float64")
        return np.ascontiguousarray((X - self.x_mean) / self.x_scale, dtype=dtype)

    def device_inputs(self, backend: Any, X: Any, dtype: str) -> Any:
        """Raw features already on the device, standardized there (in the model's dtype)."""
        if self.x_mean is None:
            return X
        return (X - backend.asarray(self.x_mean, dtype)) / backend.asarray(self.x_scale, dtype)

    def targets(self, y: Any) -> Any:
        """The user's labels as class indices, or regression targets scaled as in training.

        Raises
        ------
        ValueError
            A label the model was not trained on, or labels that are not one per row.
        """
        if self.classes is None and self.y_mean is None:
            return y
        y = np.asarray(y)
        if self.y_mean is not None:
            if y.dtype.kind not in "biuf":
                raise ValueError(f"this model's targets are numbers; y holds {y.dtype}")
            return (y.astype(np.float64) - self.y_mean) / self.y_scale
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                "this model takes its class labels as one column (one of "
                f"{', '.join(map(str, self.classes))} per row); y has shape {y.shape}"
            )
        return self._indices(y)

    def _indices(self, y: np.ndarray) -> np.ndarray:
        classes = self.classes
        assert classes is not None
        unknown = np.ones(len(y), dtype=bool)
        index = np.zeros(len(y), dtype=np.int64)
        try:
            if classes.dtype.kind == "U":
                labels = y.astype(str) if y.dtype.kind in "USO" else None
            else:
                labels = y.astype(np.float64) if y.dtype.kind in "biufUSO" else None
        except (TypeError, ValueError):
            labels = None  # text that is no number: no label of numeric classes
        if labels is not None:
            index = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
            unknown = classes[index] != labels
        if np.any(unknown):
            seen = np.unique(y[unknown].astype(str))[:5]
            raise ValueError(
                f"y holds labels the model was not trained on ({', '.join(seen)}); "
                f"its classes are {', '.join(map(str, classes))}"
            )
        return index

    def outputs(self, predicted: np.ndarray, loss: str) -> np.ndarray:
        """``predict``'s network outputs in the user's terms: labels or target units."""
        if self.classes is not None and loss in CLASSIFICATION_LOSSES:
            return self.classes[predicted]
        if self.y_mean is not None:
            scale, mean = self.y_scale, self.y_mean
            if predicted.ndim == 1:
                scale, mean = scale[0], mean[0]
            return predicted * scale + mean
        return predicted

    # -- files ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a model file keeps (:data:`KEYS`), plain NumPy arrays, no objects."""
        out: dict[str, np.ndarray] = {}
        for key in KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = np.asarray(value, dtype=str if key.endswith("name") else None)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Preprocessing | None:
        """The preprocessing a file's extra arrays describe; ``None`` when they hold none."""
        found = {k: arrays[k] for k in KEYS if k in arrays}
        if not found:
            return None
        for key in ("feature_names", "target_name"):
            if key in found and found[key].dtype.kind != "U":
                raise ValueError(f"{key} must be text, got {found[key].dtype}")
        if "feature_names" in found:
            found["feature_names"] = list(found["feature_names"].reshape(-1))
        if "target_name" in found:
            found["target_name"] = str(found["target_name"].reshape(-1)[0])
        return cls(**found)

    def same_as(self, other: Preprocessing | None) -> bool:
        """Whether ``other`` maps data the same way (so weights trained under one fit both)."""
        if other is None:
            return False
        mine, theirs = self.arrays(), other.arrays()
        mine.pop("target_name", None), theirs.pop("target_name", None)
        return mine.keys() == theirs.keys() and all(
            np.array_equal(mine[k], theirs[k]) for k in mine
        )
