"""A run refused before its first training step leaves no log folder behind."""
from __future__ import annotations

import os
import shutil

import lightning as L

from lightning_lab.errors import LabError


class DiscardRefusedRun(L.Callback):
    """Remove the run's new log folder when a LabError (bad data files found in prepare_data/setup, ...) stops it
    before its first step: Lightning creates the folder, an event file and config.yaml before the data module
    reports the problem. A folder that existed before the run (a resumed version) is never touched."""

    def __init__(self, log_dir: str | None, existed: bool) -> None:
        self.log_dir = log_dir
        self.existed = existed

    @classmethod
    def for_trainer(cls, trainer: L.Trainer) -> DiscardRefusedRun:
        """Remember, before the run creates it, whether the trainer's log folder exists."""
        log_dir = trainer.logger.log_dir if trainer.logger is not None else None
        return cls(log_dir, existed=log_dir is not None and os.path.exists(log_dir))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if (isinstance(exception, LabError) and self.log_dir and not self.existed and trainer.global_step == 0
                and trainer.is_global_zero and os.path.isdir(self.log_dir)):
            shutil.rmtree(self.log_dir, ignore_errors=True)
