"""Decision boundaries of 2-D classifiers drawn on matplotlib axes, one or several side by side (no pyplot)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def draw_decision_boundary(ax: Any, net: Any, X: np.ndarray, y: np.ndarray, title: str = "",
                           resolution: int = 200) -> None:
    """Draw P(class 1) of `net` over the plane of 2-D data `X` on the axes `ax`, the 0.5 line and the points."""
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"a decision boundary needs 2-D inputs, got shape {X.shape}")
    pad = 0.5
    (x0, y0), (x1, y1) = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    proba = net.predict_proba(np.column_stack([gx.ravel(), gy.ravel()]))[:, 1].reshape(gx.shape)
    ax.contourf(gx, gy, proba, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, proba, levels=[0.5], colors="k", linewidths=1.5)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=12)
    ax.set_title(title or type(net).__name__)


def decision_boundaries_figure(nets: Mapping[str, Any], X: np.ndarray, y: np.ndarray, resolution: int = 200,
                               panel_size: float = 4.0) -> Any:
    """One panel per network, titled with its key, sharing axes so the boundaries compare at a glance."""
    from matplotlib.figure import Figure

    if not nets:
        raise ValueError("no networks to draw")
    fig = Figure(figsize=(panel_size * len(nets), panel_size), layout="constrained")
    axes = fig.subplots(1, len(nets), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (title, net) in zip(axes, nets.items()):
        draw_decision_boundary(ax, net, X, y, title, resolution)
    return fig
