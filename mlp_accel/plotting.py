"""Training plots (matplotlib, an optional extra): loss curve and 2-D decision boundary."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_training"]


def plot_training(
    path: str | os.PathLike, history: Any, model: Any, X: np.ndarray, y: np.ndarray | None
) -> None:
    """Save a PNG with the loss curve and, for 2-D classification data, the decision boundary.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install mlp-accel[plot]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'mlp-accel[plot]'") from exc
    from .io import atomic_write

    boundary = X.shape[1] == 2 and y is not None
    fig, axes = plt.subplots(
        1, 2 if boundary else 1, figsize=(10 if boundary else 5, 4), squeeze=False
    )
    ax = axes[0, 0]
    epochs = np.arange(1, history.n_epochs + 1)
    ax.plot(epochs, history["loss"], label="train")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    ax.legend()
    if boundary:
        ax = axes[0, 1]
        pad = 0.5
        xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 200)
        ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 200)
        gx, gy = np.meshgrid(xs, ys)
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        proba = model.predict_proba(grid)
        field = proba[:, 0] if proba.shape[1] == 1 else proba.argmax(axis=1)
        ax.contourf(gx, gy, field.reshape(gx.shape), levels=20, cmap="RdBu", alpha=0.6)
        ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu", edgecolors="k", s=12)
        ax.set(title="Decision boundary (training data)", xlabel="x1", ylabel="x2")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
