"""Two interleaving half-moons (``sklearn.datasets.make_moons``), standardised with training statistics."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from lightning_lab.data.base import as_split, TabularDataModule, TensorImageDataset, check_split, stratified_split_indices
from lightning_lab.errors import ConfigError


class GaussianJitter:
    """Adds N(0, std^2) noise to a feature tensor (training augmentation; picklable for workers)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)


class MoonsDataModule(TabularDataModule):
    """2-feature binary classification, all in memory. x: float32 (2,), y: int64 in {0, 1}.

    Args:
        data_dir: unused (kept so every data module takes the same arguments).
        batch_size: samples per batch *per device/process*.
        val_split / test_split: fractions (or counts); stratified and seeded (test first, val from the rest).
        seed: seeds both the generated points and the split.
        augment: Gaussian jitter (std 0.05, in standardised units) on training points.
        n_samples / noise: passed to ``make_moons``.
    """

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: float | int = 0.1, seed: int = 42, augment: bool = False, pin_memory: bool = False,
                 persistent_workers: bool = False, n_samples: int = 1000, noise: float = 0.2,
                 test_split: float | int = 0.2) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, val_split=val_split,
                         seed=seed, augment=augment, pin_memory=pin_memory, persistent_workers=persistent_workers)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 10:
            raise ConfigError(f"n_samples must be an integer >= 10, got {n_samples!r}")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
            raise ConfigError(f"noise must be a number >= 0, got {noise!r}")
        check_split("test_split", test_split)
        self.save_hyperparameters()
        self.n_samples = n_samples
        self.noise = float(noise)
        self.test_split = as_split(test_split)
        self.num_classes = 2
        self.input_shape = (2,)
        self.classes = ["upper moon", "lower moon"]

    def build(self) -> tuple[Dataset, Dataset, Dataset]:
        from sklearn.datasets import make_moons

        x_np, y_np = make_moons(n_samples=self.n_samples, noise=self.noise, random_state=self.seed)
        x = torch.as_tensor(x_np, dtype=torch.float32)
        y = torch.as_tensor(y_np, dtype=torch.long)
        train, val, test = stratified_split_indices(y, self.val_split, self.test_split, self.seed)
        self.train_indices, self.val_indices, self.test_indices = train, val, test
        self.mean = x[train].mean(0)
        self.std = x[train].std(0).clamp_min(1e-8)
        x = (x - self.mean) / self.std
        jitter = GaussianJitter(0.05) if self.augment else None
        return (TensorImageDataset(x, y, train, transform=jitter), TensorImageDataset(x, y, val),
                TensorImageDataset(x, y, test))
