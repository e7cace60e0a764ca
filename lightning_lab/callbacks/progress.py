"""A progress bar that reads no tensor values of its own."""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class HostMetricsProgressBar(TQDMProgressBar):
    """TQDMProgressBar that also shows the floats a module keeps in `host_metrics` (the Classifier's train/loss of the
    last logging step). Logging a value with `prog_bar=True` instead would make Lightning read it from the device at
    every batch end: on a GPU, a sync per step."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.update(getattr(pl_module, "host_metrics", {}))
        return metrics
