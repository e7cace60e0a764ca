"""Device-resident batches for small image datasets (MNIST, CIFAR-10): the split's uint8 tensors live on the
training device and each batch is sliced there. It changes only *where* batches are sliced: what they hold
(uint8 images, int64 labels) and what happens next (``on_after_batch_transfer``) are those of a DataLoader.
No worker processes, no host-to-device copy per step (the approach of airbench / hlb-CIFAR10).

Its ``sampler`` follows Lightning's DDP conventions, so

- training: a ``DistributedSampler`` (also for one process): each rank reads its own shard of one seeded
  permutation, and Lightning's fit loop calls ``sampler.set_epoch(epoch)`` before each epoch (new, reproducible
  order per epoch, also after resuming);
- evaluation: an ``UnrepeatedDistributedSampler``: every sample exactly once over all ranks (no padding).

It is not a ``DataLoader``, so Lightning never replaces its sampler; its batches are already on the device, so
Lightning's ``batch_to_device`` is a no-op.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler, Subset, TensorDataset

from lightning_lab.data.base import drops_lone_last_sample


class DeviceResidentLoader:
    """Batches ``(x: uint8 (B, C, H, W), y: int64 (B,))`` from a ``TensorDataset`` (or a ``Subset`` of one)
    whose tensors are already on the device.

    Args:
        dataset: ``TensorDataset(images, labels)`` or ``Subset`` of one (the split).
        shuffle: training (seeded order per epoch, DDP shards padded like Lightning's) or evaluation (the
            split's order, every sample exactly once over all ranks).
        rank / world_size: this process's shard (DDP).
    """

    def __init__(self, dataset: TensorDataset | Subset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        base, indices = (dataset.dataset, dataset.indices) if isinstance(dataset, Subset) else (dataset, None)
        self.images, self.labels = base.tensors
        self.indices = torch.as_tensor(range(len(base)) if indices is None else indices, dtype=torch.long)
        self.batch_size = batch_size
        self.batch_sampler = None  # DataLoader-like attribute Lightning inspects
        if shuffle:
            self.sampler: DistributedSampler = DistributedSampler(
                range(len(self.indices)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        else:
            self.sampler = UnrepeatedDistributedSampler(range(len(self.indices)), num_replicas=world_size,
                                                        rank=rank, shuffle=False)

        # Training drops a last batch of exactly one sample (per rank), as BaseDataModule's DataLoader does.
        self.drop_last = shuffle and drops_lone_last_sample(len(self.sampler), batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def epoch_indices(self) -> torch.Tensor:
        """Positions into the stored tensors this rank reads this epoch, in order."""
        return self.indices[torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.epoch_indices().to(self.images.device, non_blocking=True)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.images[idx], self.labels[idx]
