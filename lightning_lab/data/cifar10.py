"""CIFAR-10 (torchvision.datasets.CIFAR10): 50k train (split into train/val), the official 10k test set."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from lightning_lab.data.augment import random_crop_flip
from lightning_lab.data.vision import TorchvisionImageDataModule
from lightning_lab.errors import first_line
from lightning_lab.errors import DatasetNotFoundError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CIFAR10DataModule(TorchvisionImageDataModule):
    """CIFAR-10: (3, 32, 32) uint8 images in ``<data_dir>/cifar-10-batches-py``, 50k train (split into
    train/val), the official 10k test set; normalised per channel with the training-set statistics
    mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616) (or ImageNet's: ``normalization: imagenet``).

    torchvision verifies every file's MD5; a mismatch is reported as corrupt files.
    ``augment``: random crop (padding 4) + horizontal flip at 32 px, batched on the device, training only.
    ``image_size``: e.g. 160 for an ImageNet-pretrained ResNet-18 (at 32 px its layer4 maps are 1x1); the
    batch is upsampled on the device after augmentation.
    Arguments: see ``TorchvisionImageDataModule``, ``ImageDataModule`` and ``BaseDataModule``.
    """

    dataset_cls = CIFAR10
    name = "CIFAR-10"
    url = CIFAR10.url
    classes = list(CIFAR10_CLASSES)
    stored_shape = (3, 32, 32)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    augmentation = staticmethod(random_crop_flip)
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)

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

    @staticmethod
    def to_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        data = torch.as_tensor(np.asarray(dataset.data))
        if data.ndim == 4 and data.shape[-1] == 3:  # torchvision keeps HWC
            data = data.permute(0, 3, 1, 2).contiguous()
        return data, torch.as_tensor(dataset.targets, dtype=torch.long)
