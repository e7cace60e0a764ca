"""MNIST (torchvision.datasets.MNIST): 60k train (split into train/val), the official 10k test set."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import extract_archive

from lightning_lab.data.augment import random_affine
from lightning_lab.data.vision import TorchvisionImageDataModule
from lightning_lab.errors import first_line
from lightning_lab.errors import DatasetNotFoundError


class MNISTDataModule(TorchvisionImageDataModule):
    """MNIST digits: (1, 28, 28) uint8 images in files under ``<data_dir>/MNIST/raw`` (torchvision's layout),
    60k train (split into train/val), the official 10k test set; normalised with (0.1307, 0.3081).

    ``augment``: small random affine (rotation 10 deg, shift 10%), batched on the device, training only.
    Arguments: see ``TorchvisionImageDataModule``, ``ImageDataModule`` and ``BaseDataModule``.
    """

    dataset_cls = MNIST
    name = "MNIST"
    url = f"{MNIST.mirrors[0]} (the four *-ubyte.gz files)"
    classes = [str(i) for i in range(10)]
    stored_shape = (1, 28, 28)
    mean = (0.1307,)
    std = (0.3081,)
    augmentation = staticmethod(random_affine)
    train_files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test_files = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    @property
    def files_dir(self) -> Path:
        return Path(self.data_dir) / "MNIST" / "raw"

    def prepare_local_files(self) -> None:
        """Unpack ``<file>.gz`` copies (as downloaded from the mirrors) that torchvision has not unpacked yet."""
        for name in self.expected_files():
            path, gz = self.files_dir / name, self.files_dir / f"{name}.gz"
            if not path.is_file() and gz.is_file():
                try:
                    extract_archive(str(gz), str(self.files_dir))
                except Exception as error:  # gzip.BadGzipFile, EOFError, OSError
                    raise DatasetNotFoundError(
                        f"{gz} is not a valid gzip file ({first_line(error)}); delete it and re-run with "
                        f"`--data.download true`, or get it from {self.url}.") from error

    def not_found_error(self) -> DatasetNotFoundError:
        error = super().not_found_error()
        elsewhere = [f for f in self.missing_files()
                     if (Path(self.data_dir) / f).is_file() or (Path(self.data_dir) / f"{f}.gz").is_file()]
        if elsewhere:
            error = DatasetNotFoundError(f"{error} Found {', '.join(elsewhere)} directly in {self.data_dir}: "
                                         f"move them into {self.files_dir} (torchvision's layout).")
        return error

    def format_error(self, train: bool, error: BaseException) -> Exception:
        images, labels = self.train_files if train else self.test_files
        for name, reader in ((images, read_image_file), (labels, read_label_file)):
            try:
                reader(str(self.files_dir / name))
            except Exception as probe:
                return DatasetNotFoundError(
                    f"{self.files_dir / name} is not a valid MNIST IDX file ({first_line(probe)}); delete it "
                    f"and re-run with `--data.download true`, or get it from {self.url}.")
        return super().format_error(train, error)

    @staticmethod
    def to_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        data = torch.as_tensor(dataset.data)
        if data.ndim == 3:
            data = data.unsqueeze(1)
        return data, torch.as_tensor(dataset.targets, dtype=torch.long)
