"""Plots with matplotlib (imported lazily): decision boundary and training curves. Figures are built as
`matplotlib.figure.Figure` objects, without pyplot, so no backend is chosen for the caller."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_decision_boundary(net, X: np.ndarray, y: np.ndarray, path, title: str = "", resolution: int = 300) -> Path:
    """Save a PNG of the predicted class over the plane of a 2-D data set, with the points on top."""
    if X.shape[1] != 2:
        raise ValueError(f"a decision boundary needs 2-D inputs, got {X.shape[1]} features")
    pad = 0.5
    (x0, y0), (x1, y1) = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    proba = net.predict_proba(grid)[:, 1].reshape(gx.shape)
    fig = _figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.contourf(gx, gy, proba, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, proba, levels=[0.5], colors="k", linewidths=1.5)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=15)
    ax.set_title(title or f"{type(net).__name__} decision boundary")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_history(history: dict[str, list], path) -> Path:
    """Save a PNG of loss and accuracy per epoch."""
    fig = _figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key in ("train_loss", "test_loss"):
        if history.get(key):
            ax_loss.plot(range(1, len(history[key]) + 1), history[key], label=key)
    for key in ("train_accuracy", "test_accuracy"):
        if history.get(key):
            ax_acc.plot(range(1, len(history[key]) + 1), history[key], label=key)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
