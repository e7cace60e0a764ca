"""Matplotlib figures of a test run for TensorBoard: confusion matrix, sample predictions.

Built as `matplotlib.figure.Figure` objects, without pyplot: no GUI backend is chosen, so importing this module
changes nothing for a user's own plots (TensorBoard renders the figures with the Agg canvas itself).
"""
from __future__ import annotations

import torch
from matplotlib.figure import Figure


def confusion_matrix_figure(confmat: torch.Tensor, class_names: list[str]) -> Figure:
    """Counts with rows = true class and columns = predicted class."""
    n = len(class_names)
    size = max(4.0, 0.5 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(confmat.numpy(), cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = confmat.max().item() / 2
    for i in range(n):
        for j in range(n):
            value = int(confmat[i, j])
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black")
    fig.tight_layout()
    return fig


def prediction_grid_figure(images: torch.Tensor, preds: torch.Tensor, targets: torch.Tensor,
                           class_names: list[str], columns: int = 8) -> Figure:
    """Images titled 'pred (true)', green when right and red when wrong."""
    count = len(images)
    rows = (count + columns - 1) // columns
    fig = Figure(figsize=(columns * 1.4, rows * 1.6))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, pred, target in zip(axes.flat, images, preds, targets):
        image = image.float()
        image = (image - image.min()) / (image.max() - image.min() + 1e-8)  # undo normalisation for display
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray")
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(f"{class_names[int(pred)]} ({class_names[int(target)]})", fontsize=7,
                     color="green" if pred == target else "red")
    fig.tight_layout()
    return fig
