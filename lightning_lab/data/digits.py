"""scikit-learn's 8x8 handwritten digits (``load_digits``, 1,797 images shipped with the package)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lightning_lab.data.base import as_split, TabularDataModule, TensorImageDataset, check_split, stratified_split_indices
from lightning_lab.errors import ConfigError


class DigitsDataModule(TabularDataModule):
    """Digits 0-9 as float32 (1, image_size, image_size) images: pixel values 0..16 scaled to [0, 1], then
    normalised with the training mean/std. ``image_size=28`` resizes (bilinear) to MNIST's shape.

    Args:
        data_dir: unused (kept so every data module takes the same arguments).
        batch_size: samples per batch *per device/process*.
        val_split / test_split: fractions (or counts); stratified and seeded (test first, val from the rest).
        seed: seed of the split.
        augment: small random affine (rotation 10 deg, shift 10%) on training images only.
        image_size: 8 (native) or larger (resized).
    """

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: float | int = 0.1, seed: int = 42, augment: bool = False, pin_memory: bool = False,
                 persistent_workers: bool = False, image_size: int = 8, test_split: float | int = 0.2) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, val_split=val_split,
                         seed=seed, augment=augment, pin_memory=pin_memory, persistent_workers=persistent_workers)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"image_size must be an integer >= 8 (8 = native, 28 = MNIST shape), got {image_size!r}")
        check_split("test_split", test_split)
        self.save_hyperparameters()
        self.image_size = image_size
        self.test_split = as_split(test_split)
        self.num_classes = 10
        self.input_shape = (1, image_size, image_size)
        self.classes = [str(i) for i in range(10)]

    def build(self) -> tuple[Dataset, Dataset, Dataset]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
        if self.image_size != 8:
            x = v2.functional.resize(x, [self.image_size, self.image_size], antialias=True).clamp_(0, 1)
        y = torch.as_tensor(digits.target, dtype=torch.long)
        train, val, test = stratified_split_indices(y, self.val_split, self.test_split, self.seed)
        self.train_indices, self.val_indices, self.test_indices = train, val, test
        self.mean = float(x[train].mean())
        self.std = float(x[train].std())
        normalise = v2.Normalize([self.mean], [self.std])
        train_tf = v2.Compose([v2.RandomAffine(degrees=10, translate=(0.1, 0.1)), normalise]) if self.augment \
            else None
        x_norm = (x - self.mean) / self.std  # eval data normalised once, kept as one tensor
        return (TensorImageDataset(x if self.augment else x_norm, y, train, transform=train_tf),
                TensorImageDataset(x_norm, y, val), TensorImageDataset(x_norm, y, test))
