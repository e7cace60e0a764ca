"""Checkpointing into checkpoints/<experiment>/version_<n>/, with the best weights also saved as a plain state dict."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from weakref import proxy

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

CHECKPOINT_ROOT = "checkpoints"
BEST_WEIGHTS_NAME = "best_weights.pt"
PARTIAL_SUFFIX = ".partial"


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


def partial_path(filepath: str | os.PathLike) -> Path:
    """Where a checkpoint is written before it is renamed into place: same folder (so the rename is atomic),
    hidden, and not ending in .ckpt (so nothing mistakes it for a checkpoint)."""
    path = Path(filepath)
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def flush_loggers(trainer: L.Trainer) -> None:
    """Write what the loggers buffer (TensorBoard keeps events in memory): a killed run keeps what it logged."""
    for logger in trainer.loggers:
        logger.save()


class LabCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose default folder is `root`/<experiment>/version_<n> instead of inside the logs.

    Crash safety: `last.ckpt` is refreshed at every epoch end (not only with a new best); each checkpoint is
    written to a hidden `.<name>.partial` in the same folder and renamed over
    `<name>` (Lightning's own atomic save stages the file in $TMPDIR, and when that is another file system its
    final "move" is a copy that a kill can leave half-done). The loggers are flushed before every checkpoint
    and at every epoch start, so the logs of a killed run reach at least as far as its last checkpoint.

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
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            for leftover in Path(self.dirpath).glob(f".*{PARTIAL_SUFFIX}"):  # from a run killed while saving
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    # Lightning 2.6 refreshes last.ckpt only when a top-k checkpoint is saved in the same step: after an epoch
    # without improvement, last.ckpt would still be the best epoch and a resumed run would redo the epochs since.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_of_every_epoch(trainer, on_train_epoch_end=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_of_every_epoch(trainer, on_train_epoch_end=True)

    def _save_last_of_every_epoch(self, trainer: L.Trainer, on_train_epoch_end: bool) -> None:
        already_saved = (self._last_global_step_saved == trainer.global_step
                         and self._last_checkpoint_saved == self.last_model_path)
        if (self.save_last is True and self._should_save_on_train_epoch_end(trainer) == on_train_epoch_end
                and not self._should_skip_saving_checkpoint(trainer) and not already_saved):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The previous epoch's train/* epoch metrics are logged after its checkpoint was saved.
        flush_loggers(trainer)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """ModelCheckpoint._save_checkpoint, writing through a partial file that is renamed into place."""
        flush_loggers(trainer)  # what the checkpoint covers is in the logs before the checkpoint exists
        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        partial = partial_path(filepath)
        trainer.save_checkpoint(partial, self.save_weights_only)  # rank 0 writes; ends with a barrier
        if trainer.is_global_zero and partial.exists():
            if partial.is_dir() and os.path.isdir(filepath):  # sharded checkpoint folder
                shutil.rmtree(filepath)
            os.replace(partial, filepath)
        trainer.strategy.barrier("LabCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

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
