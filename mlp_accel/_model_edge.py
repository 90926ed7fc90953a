"""A model's edge: host data validated, put through the model's preprocessing and moved to
the device once (:class:`DataEdge`, a base of :class:`~mlp_accel.MLP`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._validation import check_inputs, check_targets
from .preprocessing import Preprocessing

if TYPE_CHECKING:
    import numpy as np

    from .backends import Backend

__all__ = ["DataEdge"]

Array = Any


class DataEdge:
    """What a model does with data before the equations see it."""

    layers: tuple[int, ...]
    loss: str
    dtype: str
    backend: Backend
    _preprocessing: Preprocessing | None = None

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The feature scaling, class labels and target scaling applied at the edge, or None.

        A model saved by ``mlp-accel train`` comes back from :func:`~mlp_accel.load` with one:
        every method taking host data (``forward``, ``predict``, ``predict_proba``,
        ``evaluate``, ``gradients``) and :func:`~mlp_accel.fit` then take raw features and the
        user's labels or targets, and :meth:`predict` returns labels (or targets in their
        units). Set to ``None`` to work in the network's terms (scaled inputs, class indices).
        """
        return self._preprocessing

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing | None) -> None:
        if value is not None and not isinstance(value, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing or None, got {value!r}")
        if value is not None:
            value.checked(self.layers[0], self.layers[-1], self.loss)
        self._preprocessing = value

    def prepare_inputs(self, X: Any) -> Array:
        """Validate host inputs and move them to the device once (device arrays pass through)."""
        pre = self._preprocessing
        if self.backend.is_device_array(X):
            if X.ndim != 2 or X.shape[1] != self.layers[0]:
                raise ValueError(
                    f"X has shape {tuple(X.shape)}, but the model expects (n, {self.layers[0]})"
                )
            return X if pre is None else pre.device_inputs(self.backend, X, self.dtype)
        return self.backend.asarray(self._host_inputs(X), self.dtype)

    def _host_inputs(self, X: Any) -> np.ndarray:
        pre = self._preprocessing
        if pre is None:
            return check_inputs(X, self.layers[0], self.dtype)
        return pre.inputs(X, self.layers[0], self.dtype)

    def _host_targets(self, y: Any, n_rows: int) -> np.ndarray:
        if self._preprocessing is not None:
            y = self.backend.to_numpy(y) if self.backend.is_device_array(y) else y
            y = self._preprocessing.targets(y)
        return check_targets(y, n_rows, self.layers[-1], self.loss, self.dtype)

    def prepare_host(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate host ``X`` and ``y`` and convert them to the model's dtype, on the host.

        Integer labels become one-hot for ``cross_entropy``; a 1-D ``y`` becomes a column.
        """
        X_host = self._host_inputs(X)
        return X_host, self._host_targets(y, X_host.shape[0])

    def prepare(self, X: Any, y: Any) -> tuple[Array, Array]:
        """Validate ``X`` and ``y`` on the host and move them to the device once.

        Integer labels become one-hot for ``cross_entropy``; a 1-D ``y`` becomes a column.
        """
        if not self.backend.is_device_array(X):
            X_host, y_host = self.prepare_host(X, y)
            return self.backend.asarray(X_host, self.dtype), self.backend.asarray(
                y_host, self.dtype
            )
        Xd = self.prepare_inputs(X)
        if self.backend.is_device_array(y) and self._preprocessing is None:
            if y.ndim != 2 or y.shape != (Xd.shape[0], self.layers[-1]):
                raise ValueError(
                    f"y has shape {tuple(y.shape)}, expected ({Xd.shape[0]}, {self.layers[-1]})"
                )
            return Xd, y
        return Xd, self.backend.asarray(self._host_targets(y, Xd.shape[0]), self.dtype)
