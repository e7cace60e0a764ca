"""Device-resident data for small image datasets (MNIST, CIFAR-10): the whole split lives as one uint8 tensor on
the training device; each batch is sliced from a seeded per-epoch permutation, converted, augmented and
normalised there, batched. No worker processes, no PIL, no host-to-device copy per step: the approach of the
fastest public CIFAR-10 trainers (Keller Jordan's airbench / hlb-CIFAR10).

Lightning integration: the data module builds a :class:`DeviceResidentLoader` in ``*_dataloader()`` with the
device, rank and world size of ``self.trainer`` (``strategy.root_device``, ``global_rank``, ``world_size``).
Its ``sampler`` is a :class:`~torch.utils.data.DistributedSampler` (also for one process), so

- every rank reads its own shard of the same seeded permutation (no overlap, every index once per epoch,
  padded to equal length like Lightning's own distributed sampler);
- Lightning's fit loop calls ``sampler.set_epoch(epoch)`` before each epoch, so the order changes per epoch and
  is reproducible (seed + epoch), also after resuming.

The loader is not a ``DataLoader``, so Lightning never replaces its sampler; its batches are already on the
device, so Lightning's ``batch_to_device`` is a no-op.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

# augment(x, generator) -> x: float32 (B, C, H, W) images in [0, 255] on the device, before normalisation.
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DeviceResidentLoader:
    """Batches ``(x: float32 (B, C, H, W), y: int64 (B,))`` from uint8 images already on ``device``.

    Args:
        data: uint8 (N, C, H, W) images (the whole dataset; moved to ``device`` once, shared between splits).
        targets: int64 (N,) labels.
        indices: the split (positions into ``data``).
        mean / std: per-channel normalisation in [0, 1] units (as for ``v2.Normalize`` after ``ToDtype``).
        augment: batched augmentation on the device (training only), or None.
        shuffle: new seeded order each epoch (training) or the split's order (evaluation).
        rank / world_size: this process's shard (DDP); ``DistributedSampler`` semantics.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, indices: Sequence[int] | torch.Tensor,
                 batch_size: int, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                 augment: BatchAugment | None = None, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False) -> None:
        if data.dtype != torch.uint8 or data.ndim != 4:
            raise ValueError(f"data must be uint8 (N, C, H, W), got {data.dtype} {tuple(data.shape)}")
        self.device = torch.device(device)
        self.data = data.to(self.device, non_blocking=True)
        self.targets = targets.to(self.device, dtype=torch.long, non_blocking=True)
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.rank = rank
        # Same semantics as the sampler Lightning injects for a DataLoader under DDP.
        self.batch_sampler = None  # DataLoader-like attribute Lightning inspects (e.g. its shuffle check)
        self.sampler = DistributedSampler(range(len(self.indices)), num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)
        shape = (1, -1, 1, 1)
        # x_norm = (x / 255 - mean) / std = x * scale + shift, one fused op per batch
        std_t = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(shape).to(self.device)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / std_t).view(shape).to(self.device)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def epoch_indices(self) -> torch.Tensor:
        """Positions into ``data`` this rank reads this epoch, in order."""
        return self.indices[torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)]

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.epoch_indices().to(self.device, non_blocking=True)
        generator = None
        if self.augment is not None:
            # Augmentation randomness: reproducible per (seed, epoch, rank), drawn on the device.
            generator = torch.Generator(device=self.device)
            generator.manual_seed((self.seed * 1_000_003 + self.epoch * 1_009 + self.rank) % (2**63))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.data[idx].float()
            if self.augment is not None:
                x = self.augment(x, generator)
            yield torch.addcmul(self.shift, x, self.scale), self.targets[idx]


# --------------------------------------------------------------------------- batched augmentations
def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """``v2.RandomCrop(size, padding=padding)`` (zero fill) + ``v2.RandomHorizontalFlip()`` on a whole batch:
    one independent offset and flip per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  translate: float = 0.1) -> torch.Tensor:
    """``v2.RandomAffine(degrees, translate=(t, t))`` (nearest, zero fill) on a whole batch via
    ``affine_grid``/``grid_sample``: rotation uniform in [-degrees, degrees], shift uniform in
    [-t, t] x size (torchvision rounds the shift to whole pixels; here it is rounded too)."""
    b, _, h, w = x.shape
    angle = (torch.rand(b, device=x.device, generator=generator) * 2 - 1) * math.radians(degrees)
    tx = torch.round((torch.rand(b, device=x.device, generator=generator) * 2 - 1) * translate * w)
    ty = torch.round((torch.rand(b, device=x.device, generator=generator) * 2 - 1) * translate * h)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # grid_sample maps output -> input coordinates (normalised to [-1, 1]): the inverse transform.
    theta = torch.stack([
        torch.stack([cos, sin, -(cos * tx + sin * ty) * 2 / w], dim=1),
        torch.stack([-sin, cos, -(-sin * tx + cos * ty) * 2 / h], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
