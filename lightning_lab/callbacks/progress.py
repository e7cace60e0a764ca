"""The progress bar: Lightning's TQDMProgressBar, redrawn every few steps, also showing step metrics that are not
logged with `prog_bar=True`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

# Redraws (each reads the shown values to the host: a device sync on a GPU) every this many steps.
REFRESH_STEPS = 10


class StepMetricsProgressBar(TQDMProgressBar):
    """TQDMProgressBar that also shows the `show` metrics of `trainer.callback_metrics` (e.g. the step's
    `train/loss`), read only when the bar redraws.

    A value logged with `self.log(..., prog_bar=True, on_step=True)` is read to the host by Lightning at every batch
    end, redraw or not (Lightning 2.6 converts progress-bar values to numbers whenever it collects metrics): a device
    sync per step. Logged without `prog_bar`, the value stays a device tensor in `callback_metrics` (where
    EarlyStopping and ModelCheckpoint find it), and this bar reads it once per redraw, through `get_metrics`, the
    method Lightning documents for changing what the bar shows.
    """

    def __init__(self, refresh_rate: int = REFRESH_STEPS, show: Sequence[str] = ("train/loss",), **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.show = tuple(show)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        callback_metrics = trainer.callback_metrics
        for name in self.show:
            if name in callback_metrics and name not in metrics:
                metrics[name] = callback_metrics[name].item()
        return metrics
