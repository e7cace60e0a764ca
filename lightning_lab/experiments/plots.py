"""PNG plots for REPORT.md: test accuracy per choice (bar charts) and val/acc learning curves from TensorBoard.

Figures are `matplotlib.figure.Figure` objects saved directly: importing this module selects no backend and
opens no window (no pyplot).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Effect = tuple[str, int, float, float]          # value, runs, mean, half-width of the 95% interval (nan: none)
Curve = tuple[str, list[float], list[float]]    # label, epochs, values


def read_curve(log_dir: str | os.PathLike, tag: str = "val/acc") -> tuple[list[float], list[float]]:
    """(epochs, values) of a scalar in a TensorBoard run folder (all its event files), x in epochs completed.

    Lightning logs an ``epoch`` scalar at every logging step; a val/acc point at step s is at epoch[s] + 1.
    Without it the points are numbered 1, 2, ... A resumed run's repeated steps keep the newest value.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not log_dir or not Path(log_dir).is_dir():
        return [], []
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags().get("scalars", [])
    if tag not in tags:
        return [], []
    points = {event.step: event.value for event in accumulator.Scalars(tag)}
    epoch_at = {event.step: event.value for event in accumulator.Scalars("epoch")} if "epoch" in tags else {}
    steps = sorted(points)
    if epoch_at and all(s in epoch_at for s in steps):
        epochs = [epoch_at[s] + 1 for s in steps]
    else:
        epochs = list(range(1, len(steps) + 1))
    return [float(e) for e in epochs], [float(points[s]) for s in steps]


def effects_chart(effects: dict[str, list[Effect]], path: str | os.PathLike, title: str) -> Path:
    """One bar chart per setting: mean test accuracy per value, its 95% interval as error bars, n under each."""
    names = list(effects)
    columns = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        ax.axis("on")
        values = effects[name]
        labels = [f"{v}\n(n={n})" for v, n, _, _ in values]
        means = [m for _, _, m, _ in values]
        halves = [0.0 if math.isnan(h) else h for _, _, _, h in values]
        bars = ax.bar(range(len(values)), means, yerr=halves, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_title(name)
        ax.set_ylabel("test accuracy")
        low = min((m - s for m, s in zip(means, halves)), default=0.0)
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(m + s for m, s in zip(means, halves)) + 0.05))
        for bar, mean in zip(bars, means):
            ax.annotate(f"{mean:.3f}", (bar.get_x() + bar.get_width() / 2, mean), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def curves_chart(curves: Sequence[Curve], path: str | os.PathLike, title: str, ylabel: str = "val/acc") -> Path:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for label, epochs, values in curves:
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
