"""CIFAR-10 (torchvision.datasets.CIFAR10): 50k train (split into train/val), the official 10k test set."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.transforms import v2

from lightning_lab.data.device import BatchAugment, random_crop_flip
from lightning_lab.data.vision import TorchvisionImageDataModule, first_line
from lightning_lab.errors import DatasetNotFoundError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CIFAR10DataModule(TorchvisionImageDataModule):
    """CIFAR-10 as (3, 32, 32) float32 images, normalised per channel with the training-set statistics
    mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).

    torchvision verifies every file's MD5; a mismatch is reported as corrupt files.

    Args: as :class:`MNISTDataModule`; files live in ``<data_dir>/cifar-10-batches-py``;
    ``augment``: random crop (padding 4) + horizontal flip on training images only (with
    ``device_resident=True`` done batched on the device, see ``lightning_lab.data.device``).
    """

    dataset_cls = CIFAR10
    name = "CIFAR-10"
    url = CIFAR10.url
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: float | int = 0.1, seed: int = 42, download: bool = True, augment: bool = False,
                 pin_memory: bool = False, persistent_workers: bool = False, in_memory: bool = True,
                 device_resident: bool = False) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, val_split=val_split,
                         seed=seed, download=download, augment=augment, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, in_memory=in_memory,
                         device_resident=device_resident)
        self.save_hyperparameters()
        self.num_classes = 10
        self.input_shape = (3, 32, 32)
        self.classes = list(CIFAR10_CLASSES)

    @property
    def files_dir(self) -> Path:
        return Path(self.data_dir) / CIFAR10.base_folder

    def expected_files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files + (CIFAR10.meta["filename"],)

    def format_error(self, train: bool, error: BaseException) -> Exception:
        """Name the first batch file that is not a CIFAR-10 pickle of (N, 3072) uint8 images and N labels."""
        for name in self.train_files + self.test_files:
            path = self.files_dir / name
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                data = np.asarray(entry["data"])
                labels = entry.get("labels", entry.get("fine_labels"))
                problem = None
                if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                    problem = f"'data' has shape {data.shape}, expected (N, 3072)"
                elif labels is None or len(labels) != len(data):
                    problem = f"{0 if labels is None else len(labels)} labels for {len(data)} images"
            except Exception as probe:
                problem = f"not a CIFAR-10 python pickle batch ({first_line(probe)})"
            if problem:
                return DatasetNotFoundError(f"{path}: {problem}. Delete {self.files_dir} and re-run with "
                                            f"`--data.download true`, or get the files from {self.url}.")
        return DatasetNotFoundError(
            f"CIFAR-10 files in {self.files_dir} failed torchvision's check ({first_line(error)}): they are "
            f"corrupt or not the official files (MD5 mismatch). Delete {self.files_dir} and re-run with "
            f"`--data.download true`, or get {self.url}.")

    def augmentations(self) -> list[Any]:
        return [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]

    def batch_augment(self) -> BatchAugment:
        return random_crop_flip

    @staticmethod
    def to_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        data = torch.as_tensor(np.asarray(dataset.data))
        if data.ndim == 4 and data.shape[-1] == 3:  # torchvision keeps HWC
            data = data.permute(0, 3, 1, 2).contiguous()
        return data, torch.as_tensor(dataset.targets, dtype=torch.long)
