"""Two interleaving half-moons (``sklearn.datasets.make_moons``), standardised with training statistics."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from lightning_lab.data.base import BaseDataModule, check_split, split_indices
from lightning_lab.errors import ConfigError

JITTER_STD = 0.05  # training augmentation: Gaussian noise, in standardised units


class MoonsDataModule(BaseDataModule):
    """2-feature binary classification, all in memory. x: float32 (2,), y: int64 in {0, 1}.

    Args (besides the common ones):
        n_samples / noise: passed to ``make_moons`` (``seed`` seeds the points and the split).
        test_split: fraction (or count); stratified and seeded (test first, val from the rest).
    ``data_dir`` is unused. ``augment``: Gaussian jitter (std 0.05) on training points, on the device.
    """

    classes = ["upper moon", "lower moon"]
    input_shape = (2,)

    def __init__(self, n_samples: int = 1000, noise: float = 0.2, test_split: int | float = 0.2,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_samples < 10:
            raise ConfigError(f"n_samples must be >= 10, got {n_samples!r}")
        if not noise >= 0:
            raise ConfigError(f"noise must be >= 0, got {noise!r}")
        check_split("test_split", test_split)
        self.n_samples = n_samples
        self.noise = float(noise)
        self.test_split = test_split

    def prepare_data(self) -> None:
        """Nothing to download."""

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        from sklearn.datasets import make_moons

        x_np, y_np = make_moons(n_samples=self.n_samples, noise=self.noise, random_state=self.seed)
        x = torch.as_tensor(x_np, dtype=torch.float32)
        y = torch.as_tensor(y_np, dtype=torch.long)
        self.train_indices, self.val_indices, self.test_indices = split_indices(
            len(y), self.seed, self.val_split, self.test_split, stratify=y)
        self.mean = x[self.train_indices].mean(0)
        self.std = x[self.train_indices].std(0).clamp_min(1e-8)
        full = TensorDataset((x - self.mean) / self.std, y)
        self.data_train = Subset(full, self.train_indices)
        self.data_val = Subset(full, self.val_indices)
        self.data_test = Subset(full, self.test_indices)

    def transform_batch(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if not (training and self.augment):
            return x
        noise = torch.randn(x.shape, device=x.device, generator=self.augmentation_generator(x.device))
        return x + JITTER_STD * noise
