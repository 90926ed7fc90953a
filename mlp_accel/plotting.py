"""Training plots (matplotlib, an optional extra): loss curves and 2-D decision boundary.

Figures are built with matplotlib's object API (:class:`matplotlib.figure.Figure`), never with
``pyplot`` state or ``matplotlib.use``, so plotting leaves a user's backend and open figures
alone. Each drawing function takes ``ax=`` to draw into the user's own axes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "require_matplotlib",
    "plot_loss",
    "plot_decision_boundary",
    "plot_training",
    "plot_format",
    "PLOT_FORMATS",
]

#: File suffixes :func:`plot_training` writes, each in its own format.
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def plot_format(path: str | os.PathLike) -> str:
    """Return the image format a plot path's suffix names.

    Raises
    ------
    ValueError
        The suffix is none of :data:`PLOT_FORMATS` (a PDF must not get PNG bytes).
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise ValueError(
            f"cannot tell the image format of {os.fspath(path)!r}: "
            f"use one of the suffixes {', '.join('.' + f for f in PLOT_FORMATS)}"
        )
    return suffix


def require_matplotlib() -> None:
    """Raise a clear ``ImportError`` now if matplotlib is not installed.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install mlp-accel[plot]``).
    """
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"plotting needs matplotlib ({exc}): pip install 'mlp-accel[plot]'"
        ) from None


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(5, 4)).add_subplot()


def plot_loss(history: Any, ax: Any = None) -> Any:
    """Draw the training loss per epoch, and the validation loss and accuracy where recorded.

    The validation accuracy (``val_accuracy``, classification with validation data) goes on
    a second y axis sharing ``ax``'s x axis (:meth:`~matplotlib.axes.Axes.twinx`), on a linear
    scale from 0 to 1 beside the losses' log scale; one legend names every line.

    Parameters
    ----------
    history : History
        The return value of :func:`mlp_accel.fit`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new :class:`~matplotlib.figure.Figure`'s axes.

    Returns
    -------
    matplotlib.axes.Axes
        The axes of the losses (``ax.figure`` is its figure, which also holds the accuracy's
        twin axes when there is one).
    """
    ax = _axes(ax)
    epochs = np.arange(1, history.n_epochs + 1)
    lines = ax.plot(epochs, history["loss"], label="train loss")
    if "val_loss" in history:
        lines += ax.plot(epochs, history["val_loss"], label="validation loss")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    if "val_accuracy" in history:
        acc = ax.twinx()
        lines += acc.plot(epochs, history["val_accuracy"], "C2--", label="validation accuracy")
        acc.set(ylabel="accuracy", ylim=(0.0, 1.02))
    ax.legend(handles=lines)
    return ax


def plot_decision_boundary(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    ax: Any = None,
    title: str = "Decision boundary",
) -> Any:
    """Draw a 2-feature classifier's predicted class field with the points ``(X, y)`` on it.

    Parameters
    ----------
    model : MLP
        A classifier with 2 inputs.
    X : ndarray of shape (n, 2)
        Points to show, in the model's input space.
    y : ndarray of shape (n,)
        Their class labels (colours).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new :class:`~matplotlib.figure.Figure`'s axes.
    title : str
        Axes title; say which data the points are (the test split, say).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If ``X`` does not have exactly 2 columns.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"a decision boundary needs 2 features, got X of shape {X.shape}")
    ax = _axes(ax)
    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 200)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 200)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    proba = model.predict_proba(grid)
    field = proba[:, 0] if proba.shape[1] == 1 else proba.argmax(axis=1)
    ax.contourf(gx, gy, field.reshape(gx.shape), levels=20, cmap="RdBu", alpha=0.6)
    labels = _labels(np.asarray(y))
    at_points = model.predict_proba(X)
    if at_points.shape[1] == 1:
        predicted = (at_points[:, 0] >= 0.5).astype(int)
    else:
        predicted = at_points.argmax(axis=1)
    wrong = predicted != labels
    # Coloured by true class on the same scale as the field; misclassified points crossed.
    ax.scatter(
        X[:, 0],
        X[:, 1],
        c=labels,
        cmap="RdBu",
        vmin=0,
        vmax=max(labels.max(), 1),
        edgecolors="k",
        linewidths=0.5,
        s=14,
    )
    if wrong.any():
        ax.scatter(
            X[wrong, 0],
            X[wrong, 1],
            marker="x",
            c="k",
            s=30,
            label=f"misclassified ({int(wrong.sum())})",
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set(title=title, xlabel="x1", ylabel="x2")
    return ax


def plot_training(
    path: str | os.PathLike,
    history: Any,
    model: Any,
    X: np.ndarray,
    y: np.ndarray | None,
    data_name: str = "test split",
) -> Any:
    """Save one image of the loss curves and, for 2-D classification data, the decision boundary.

    The loss panel is :func:`plot_loss`'s: the validation loss and accuracy too, where the
    history recorded them.

    Parameters
    ----------
    path : path-like
        Image written atomically, in the format of its suffix (:func:`plot_format`).
    history, model
        As for :func:`plot_loss` and :func:`plot_decision_boundary`.
    X, y : ndarray
        Points of the boundary panel (``y=None`` or not 2-D: no boundary panel).
    data_name : str
        Which data ``X`` is, for the panel's title (the CLI passes the test split).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install mlp-accel[plot]``).
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    from .io import atomic_write

    boundary = y is not None and X.ndim == 2 and X.shape[1] == 2
    fig = Figure(figsize=(10 if boundary else 5, 4))
    axes = fig.subplots(1, 2 if boundary else 1, squeeze=False)
    plot_loss(history, ax=axes[0, 0])
    if boundary and y is not None:
        plot_decision_boundary(model, X, y, ax=axes[0, 1], title=f"Decision boundary ({data_name})")
    fig.tight_layout()
    fmt = plot_format(path)
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=100))
    return fig


def _labels(y: np.ndarray) -> np.ndarray:
    """Integer class labels from labels, a 0/1 column or one-hot rows."""
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return np.rint(y.reshape(len(y))).astype(int)
