"""Checkpointing into checkpoints/<experiment>/version_<n>/, with the best weights also saved as a plain state dict."""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

CHECKPOINT_ROOT = "checkpoints"
BEST_WEIGHTS_NAME = "best_weights.pt"


def experiment_dir(root: str | os.PathLike, trainer: L.Trainer) -> Path:
    """checkpoints/<logger name>/version_<logger version>, so checkpoints sit beside their TensorBoard run."""
    if trainer.loggers:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(root) / str(logger.name) / version
    return Path(root) / "default"


def net_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The bare network's weights from a Lightning checkpoint (keys under `net.`, torch.compile's prefix removed)."""
    state = {}
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("net."):
            state[key.removeprefix("net.").replace("_orig_mod.", "")] = value
    return state


class LabCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose default folder is `root`/<experiment>/version_<n> instead of inside the logs.

    At the end of training the best checkpoint's network weights are also written as `best_weights.pt`,
    a plain state dict that loads into the bare nn.Module (e.g. ParametricCNN) without Lightning.
    """

    def __init__(self, *args, root: str = CHECKPOINT_ROOT, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.root = root

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            # Rank 0 decides; other processes may see a different "next version" on disk.
            self.dirpath = trainer.strategy.broadcast(str(experiment_dir(self.root, trainer)))
        super().setup(trainer, pl_module, stage)

    @property
    def best_weights_path(self) -> Path | None:
        return Path(self.dirpath) / BEST_WEIGHTS_NAME if self.dirpath else None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        source = self.best_model_path or self.last_model_path
        if trainer.is_global_zero and source and os.path.isfile(source):
            checkpoint = torch.load(source, map_location="cpu", weights_only=False)
            torch.save(net_state_dict(checkpoint), self.best_weights_path)
            rank_zero_info(f"Best weights (plain state dict): {self.best_weights_path}")
        trainer.strategy.barrier()
