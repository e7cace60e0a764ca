"""Small helpers the data tests share."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable, TypeVar

import lightning as L
import torch

DataModule = TypeVar("DataModule", bound=L.LightningDataModule)


def ready(datamodule: DataModule) -> DataModule:
    """prepare_data then setup, as the Trainer does."""
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def all_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch of a loader concatenated, as stored: (inputs, targets)."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def as_trainer(training: bool, rank: int = 0, epoch: int = 0) -> SimpleNamespace:
    """The parts of a Trainer the data modules' batch hook reads."""
    return SimpleNamespace(training=training, global_rank=rank, current_epoch=epoch, world_size=1,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def network_batches(datamodule: L.LightningDataModule, loader: Iterable, training: bool = False,
                    rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch as the network sees it: through ``on_after_batch_transfer`` as in a fit (``training``) or an
    evaluation, with a stand-in trainer of the given global rank."""
    datamodule.trainer = as_trainer(training, rank)
    try:
        xs, ys = zip(*(datamodule.on_after_batch_transfer(batch, 0) for batch in loader))
    finally:
        datamodule.trainer = None
    return torch.cat(xs), torch.cat(ys)
