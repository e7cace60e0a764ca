"""PNG plots for REPORT.md: each choice's difference from the best value (with its interval) and val/acc learning curves from TensorBoard.

Figures are `matplotlib.figure.Figure` objects saved directly: importing this module selects no backend and
opens no window (no pyplot).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lightning_lab.atomic import atomic_write_with

if TYPE_CHECKING:
    from lightning_lab.experiments.stats import Difference

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
    # A resumed run's event file starts with a restart marker at its checkpoint's step (the CLI's purge_step):
    # TensorBoard drops the older events from that step on, as meant, and warns of "a TensorFlow restart".
    tensorboard_log = logging.getLogger("tensorboard")
    level = tensorboard_log.level
    tensorboard_log.setLevel(logging.ERROR)
    try:
        accumulator.Reload()
    finally:
        tensorboard_log.setLevel(level)
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


def effects_chart(effects: dict[str, list[Difference]], path: str | os.PathLike, title: str) -> Path:
    """One panel per setting: each value's difference from the setting's best value (at 0), with its 95% interval
    as a horizontal bar; a value with one pair has a point and no bar."""
    names = list(effects)
    heights = [max(1, len(effects[n])) + 1 for n in names]
    fig = Figure(figsize=(8, 0.9 + 0.45 * sum(heights) + 0.5 * len(names)))
    axes = fig.subplots(len(names), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    colors = {"worse": "tab:red", "better": "tab:green", "no detectable difference": "tab:blue"}
    for ax, name in zip(axes, names):
        diffs = effects[name]
        ys = list(range(len(diffs) + 1))[::-1]
        ax.plot(0.0, ys[0], "o", color="tab:gray")
        for y, d in zip(ys[1:], diffs):
            half = None if math.isnan(d.half) else d.half
            ax.errorbar(d.mean, y, xerr=half, fmt="o", color=colors.get(d.verdict, "tab:gray"), capsize=4)
            ax.annotate(f"{d.mean:+.3f}" + (f" ± {half:.3f}" if half is not None else " (one pair)"), (d.mean, y),
                        xytext=(0, 7), textcoords="offset points", ha="center", fontsize=9)
        ends = [0.0] + [d.mean + sign * (0 if math.isnan(d.half) else d.half) for d in diffs for sign in (-1, 1)]
        pad = max(0.005, 0.15 * (max(ends) - min(ends)))
        ax.set_xlim(min(ends) - pad, max(ends) + pad)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [f"{diffs[0].reference} (best)"] + [f"{d.value} (n={d.n})" for d in diffs], fontsize=9)
        ax.set_ylim(-0.7, len(ys) - 0.3)
        ax.set_title(name, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("difference in val/acc from the best value (95% paired interval)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def curves_chart(curves: Sequence[Curve], path: str | os.PathLike, title: str, ylabel: str = "val/acc") -> Path:
    """Learning curves, the legend inside the axes (lower right, where curves that rise leave room)."""
    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    for label, epochs, values in curves:
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.85)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
