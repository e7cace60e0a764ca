"""Plots with matplotlib (imported lazily): decision boundary and training curves. Figures are built as
`matplotlib.figure.Figure` objects, without pyplot, so no backend is chosen for the caller."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import draw_decision_boundary


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_decision_boundary(net, X: np.ndarray, y: np.ndarray, path, title: str = "", resolution: int = 300) -> Path:
    """Save a PNG of the predicted class over the plane of a 2-D data set, with the points on top."""
    fig = _figure(figsize=(6, 5))
    draw_decision_boundary(fig.subplots(), net, X, y, title or f"{type(net).__name__} decision boundary", resolution)
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
