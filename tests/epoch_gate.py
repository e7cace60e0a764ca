"""A callback for tests that stop a run at a known point: from the second epoch a run trains in this process on, it
waits at the start of each epoch (the previous epoch's checkpoints are written by then) while the file `hold`
exists. A test creates the file, starts training, acts once the run is held (kills it, sends Ctrl-C, ...), and
removes the file to let runs go on. With `held`, the callback writes that file when it starts to wait: the test
knows the run is held, not only that its checkpoint is written. The sweep's trials import it as
``tests.epoch_gate.HoldAtEpochStart`` (the sweep tests put the repository on PYTHONPATH)."""
from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer


class HoldAtEpochStart(Callback):
    def __init__(self, hold: str, held: str | None = None) -> None:
        self.hold = Path(hold)
        self.held = Path(held) if held else None
        self.first_epoch: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.first_epoch = trainer.current_epoch  # > 0 when continuing from a checkpoint

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch > self.first_epoch:
            if self.held and self.hold.exists():
                self.held.write_text(str(trainer.current_epoch))
            while self.hold.exists():
                time.sleep(0.1)
