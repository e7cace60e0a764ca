"""Training augmentations as batched ops on the device: float (B, C, H, W) images in [0, 1] in, the same shape
out, one independent random draw per image from the given generator (see ``BaseDataModule.augmentation_generator``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# augment(x, generator) -> x
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, generator=generator)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """``v2.RandomCrop(size, padding=padding)`` (zero fill) + ``v2.RandomHorizontalFlip()`` on a whole batch."""
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
    """``v2.RandomAffine(degrees, translate=(t, t))`` (nearest, zero fill) on a whole batch: rotation uniform in
    [-degrees, degrees], shift uniform in [-t, t] x size, rounded to whole pixels as torchvision does."""
    b, _, h, w = x.shape
    angle = uniform(b, -1, 1, x, generator) * math.radians(degrees)
    tx = torch.round(uniform(b, -1, 1, x, generator) * translate * w)
    ty = torch.round(uniform(b, -1, 1, x, generator) * translate * h)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # grid_sample maps output -> input coordinates (normalised to [-1, 1]): the inverse transform.
    theta = torch.stack([
        torch.stack([cos, sin, -(cos * tx + sin * ty) * 2 / w], dim=1),
        torch.stack([-sin, cos, -(-sin * tx + cos * ty) * 2 / h], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """``v2.RandomResizedCrop(size, scale, ratio)`` + ``v2.RandomHorizontalFlip()`` on a whole batch (bilinear):
    a crop of a random share of the area and aspect ratio, resized back to the input size."""
    b = x.shape[0]
    area = uniform(b, *scale, x, generator)
    aspect = torch.exp(uniform(b, math.log(ratio[0]), math.log(ratio[1]), x, generator))
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # share of the image width the crop covers
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = uniform(b, -1, 1, x, generator) * (1 - width)
    cy = uniform(b, -1, 1, x, generator) * (1 - height)
    flip = torch.where(torch.rand(b, device=x.device, generator=generator) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(width)
    theta = torch.stack([torch.stack([width * flip, zero, cx], dim=1),
                         torch.stack([zero, height, cy], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
