"""Checkpoints in checkpoints/<experiment>/version_<n>/ beside their TensorBoard run: the best epoch (monitored),
last.ckpt every epoch, and the best network's weights as a plain state dict (best_weights.pt)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from lightning_lab.atomic import remove_partial_files
from lightning_lab.callbacks.atomic_io import atomic_save
from lightning_lab.paths import BEST_WEIGHTS_NAME, CHECKPOINT_ROOT, LAST_CKPT_NAME


def experiment_dir(root: str | os.PathLike, trainer: L.Trainer) -> Path:
    """checkpoints/<logger name>/version_<logger version>, so checkpoints sit beside their TensorBoard run."""
    if trainer.loggers:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(root) / str(logger.name) / version
    return Path(root) / "default"


def net_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The bare network's weights from a Lightning checkpoint (the keys under `net.`)."""
    return {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()
            if key.startswith("net.")}


def flush_loggers(trainer: L.Trainer) -> None:
    """Write what the loggers buffer (TensorBoard keeps events in memory): a killed run keeps what it logged."""
    for logger in trainer.loggers:
        logger.save()


class ExperimentCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose default folder is `root`/<experiment>/version_<n> instead of inside the logs, and
    which flushes the loggers before each save: the logs of a killed run reach at least as far as its last
    checkpoint. Files are made atomic by the trainer's CheckpointIO (`AtomicCheckpointIO`)."""

    def __init__(self, *args: Any, root: str = CHECKPOINT_ROOT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = root

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            # Rank 0 decides; other processes may see a different "next version" on disk.
            self.dirpath = trainer.strategy.broadcast(str(experiment_dir(self.root, trainer)))
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            remove_partial_files(self.dirpath)  # from a run killed while saving

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        flush_loggers(trainer)  # what the checkpoint covers is in the logs before the checkpoint exists
        super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flush_loggers(trainer)  # the previous epoch's train/* epoch metrics are logged after its checkpoint


class LastCheckpoint(ExperimentCheckpoint):
    """last.ckpt, rewritten at every epoch end (what `--ckpt_path last` resumes from), in the folder of the
    trainer's main checkpoint callback (the first ModelCheckpoint) unless given a `dirpath`.

    ModelCheckpoint(save_last=True) refreshes last.ckpt only in epochs that also save a top-k checkpoint; an
    unmonitored ModelCheckpoint keeping one file named "last" is Lightning's own way to save every epoch.
    Put it after the main checkpoint callback, so last.ckpt holds that callback's state of the same epoch.
    """

    def __init__(self, root: str = CHECKPOINT_ROOT, dirpath: str | os.PathLike | None = None,
                 save_weights_only: bool = False) -> None:
        super().__init__(root=root, dirpath=dirpath, filename=Path(LAST_CKPT_NAME).stem, monitor=None, save_top_k=1,
                         save_weights_only=save_weights_only, enable_version_counter=False)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        main = trainer.checkpoint_callback
        if self.dirpath is None and isinstance(main, ModelCheckpoint) and main is not self and main.dirpath:
            self.dirpath = main.dirpath
        super().setup(trainer, pl_module, stage)


class LabCheckpoint(ExperimentCheckpoint):
    """The best checkpoint(s) by the monitored metric; at the end of training, the best checkpoint's network
    weights are also written as `best_weights.pt`, a plain state dict that loads into the bare nn.Module
    (e.g. ParametricCNN) without Lightning."""

    @property
    def best_weights_path(self) -> Path | None:
        return Path(self.dirpath) / BEST_WEIGHTS_NAME if self.dirpath else None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        source = self.best_model_path or last_checkpoint_path(trainer)
        if trainer.is_global_zero and source and os.path.isfile(source) and self.best_weights_path:
            # This run's own file: its hyperparameters may hold classes (a model built in Python rather than by
            # the CLI), which weights_only loading refuses.
            checkpoint = torch.load(source, map_location="cpu", weights_only=False)
            atomic_save(net_state_dict(checkpoint), self.best_weights_path)
            rank_zero_info(f"Best weights (plain state dict): {self.best_weights_path}")
        trainer.strategy.barrier()


def last_checkpoint_path(trainer: L.Trainer) -> str:
    """The last.ckpt the run wrote ("" if none). Read from the folder, not the callback's state: testing the best
    checkpoint restores the callbacks' states of that file, written before this epoch's last.ckpt (after a best
    first epoch, none yet)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.dirpath:
            path = Path(callback.dirpath) / LAST_CKPT_NAME
            if path.is_file():
                return str(path)
    return ""
