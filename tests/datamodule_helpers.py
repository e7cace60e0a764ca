"""Small helpers the data tests share."""
from __future__ import annotations

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
    """Every batch of a loader concatenated: (inputs, targets)."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)
