"""scikit-learn's 8x8 handwritten digits (``load_digits``, 1,797 images shipped with the package)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from lightning_lab.data.augment import random_affine
from lightning_lab.data.base import check_split, split_indices
from lightning_lab.data.images import ImageDataModule


def intensities_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """scikit-learn's 0..16 pixel intensities as uint8 0..255: ``round(v * 255 / 16)``. The map is one-to-one
    (steps of ~16), so a digit saved as an 8-bit image and read back is the same tensor; ``v = round(u * 16 / 255)``
    recovers the original intensity, and the network sees ``u / 255`` (= v / 16 within 1/510), normalised."""
    return torch.round(values.float() * 255 / 16).to(torch.uint8)


class DigitsDataModule(ImageDataModule):
    """Digits 0-9 as (1, 8, 8) uint8 images (see ``intensities_to_uint8``), normalised with the whole set's
    mean/std of ``u / 255``. ``image_size: 28`` upsamples batches on the device to MNIST's shape.

    Args (besides the common ones):
        test_split: fraction (or count) held out for test; stratified and seeded (test first, val from the rest).
    ``data_dir`` is unused (the data ships with scikit-learn). ``augment``: small random affine (rotation 10 deg,
    shift 10%), training only.
    """

    classes = [str(i) for i in range(10)]
    stored_shape = (1, 8, 8)
    mean = (0.3053,)
    std = (0.3759,)
    augmentation = staticmethod(random_affine)

    def __init__(self, test_split: int | float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_split("test_split", test_split)
        self.test_split = test_split

    def prepare_data(self) -> None:
        """Nothing to download."""

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = intensities_to_uint8(torch.as_tensor(digits.images)).unsqueeze(1)  # (N, 1, 8, 8)
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        self.train_indices, self.val_indices, self.test_indices = split_indices(
            len(labels), self.seed, self.val_split, self.test_split, stratify=labels)
        full = TensorDataset(images, labels)
        self.data_train = Subset(full, self.train_indices)
        self.data_val = Subset(full, self.val_indices)
        self.data_test = Subset(full, self.test_indices)
