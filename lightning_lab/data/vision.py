"""Common part of the torchvision-backed image modules (MNIST, CIFAR-10): files, errors, split, loaders.

After torchvision has loaded and verified the files, its decoded arrays are kept as uint8 (N, C, H, W) images
and int64 labels in ``TensorDataset``s; train and val are ``Subset``s of the same one. With ``device_resident``
those tensors are moved once to the training device and batches are sliced there (``device.py``); otherwise
a DataLoader batches them. Either way ``on_after_batch_transfer`` does the rest (``images.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from lightning_lab.data.base import info, split_indices
from lightning_lab.data.device import DeviceResidentLoader
from lightning_lab.data.images import ImageDataModule
from lightning_lab.errors import DatasetNotFoundError, first_line
from lightning_lab.fast_defaults import machine_fast_defaults


class TorchvisionImageDataModule(ImageDataModule):
    """Base for a torchvision classification dataset with an official train/test pair.

    Args (besides those of ``ImageDataModule``):
        download: download missing files in ``prepare_data``.
        device_resident: keep the images on the training device and slice batches there (no workers);
            None: on where ``lightning_lab.fast_defaults`` says so for the device (CUDA yes, CPU no).
    """

    dataset_cls: type  # torchvision dataset class
    name: str  # human name in messages
    url: str  # where users can get the files by hand
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]

    def __init__(self, download: bool = True, device_resident: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.download = download
        self.device_resident = device_resident

    # ------------------------------------------------------------------ files
    @property
    def files_dir(self) -> Path:
        """The folder torchvision reads the files from."""
        raise NotImplementedError

    def expected_files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if not (self.files_dir / f).is_file()]

    def not_found_error(self) -> DatasetNotFoundError:
        missing = self.missing_files() or list(self.expected_files())
        return DatasetNotFoundError(
            f"{self.name} not found: looked in {self.files_dir} for {', '.join(missing)}. "
            f"Get it with `--data.download true` (download=True) on a machine with internet access, "
            f"or download {self.url} and extract it into {self.data_dir}.")

    def download_error(self, error: BaseException) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"Downloading {self.name} into {self.data_dir} failed ({first_line(error, all_lines=True, limit=300)}). "
            f"Check the network, or on a machine with internet access download {self.url} and put "
            f"{', '.join(self.expected_files())} into {self.files_dir}.")

    def format_error(self, train: bool, error: BaseException) -> Exception:
        """Files are there but torchvision could not read them: name the file (subclasses probe)."""
        files = self.train_files if train else self.test_files
        return DatasetNotFoundError(
            f"{self.name} files in {self.files_dir} could not be read ({first_line(error)}): one of "
            f"{', '.join(files)} is corrupt or not in the expected format; delete it and re-run with "
            f"`--data.download true`, or get the files from {self.url}.")

    def prepare_local_files(self) -> None:
        """Hook: make files already on disk usable (e.g. unpack .gz) before checking for them."""

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Download the official train and test files if missing (rank 0 of each node; assigns no state)."""
        if self.predicts_files_only():
            return
        self.prepare_local_files()
        if not self.missing_files():
            return
        if not self.download:
            raise self.not_found_error()
        info(f"{self.name}: downloading into {self.data_dir}")
        try:
            for train in (True, False):
                self.dataset_cls(self.data_dir, train=train, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError/OSError/... from deep inside
            if self.missing_files():
                raise self.download_error(error) from error
            raise self.format_error(train, error) from error

    def load(self, train: bool) -> TensorDataset:
        """The official split as uint8 (N, C, H, W) images and int64 labels, with errors turned into ours."""
        self.prepare_local_files()
        try:
            dataset = self.dataset_cls(self.data_dir, train=train, download=False)
        except Exception as error:
            if self.missing_files():
                raise self.not_found_error() from error
            raise self.format_error(train, error) from error
        images, labels = self.to_tensors(dataset)
        if tuple(images.shape[1:]) != self.stored_shape or len(images) != len(labels) or len(images) == 0:
            files = self.train_files if train else self.test_files
            raise DatasetNotFoundError(
                f"{self.name} files {', '.join(files)} in {self.files_dir} hold {len(images)} images of shape "
                f"{tuple(images.shape[1:])} and {len(labels)} labels; expected images of shape "
                f"{self.stored_shape} and one label each. Delete them and re-run with `--data.download true`.")
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise DatasetNotFoundError(f"{self.name} labels in {self.files_dir} are outside 0..{self.num_classes - 1}")
        return TensorDataset(images, labels)

    @staticmethod
    def to_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, C, H, W) images and int64 (N,) labels from the torchvision dataset's decoded arrays."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Seeded train/val split of the official training set; the official test set as test (idempotent)."""
        if self.predicts_files_only():
            return
        if self.wants_fit(stage) and self.data_train is None:
            full = self.load(train=True)
            self.train_indices, self.val_indices, _ = split_indices(len(full), self.seed, self.val_split)
            self.data_train = Subset(full, self.train_indices)
            self.data_val = Subset(full, self.val_indices)
            info(f"{self.name}: {len(self.train_indices)} train / {len(self.val_indices)} val samples")
        if self.wants_test(stage) and self.data_test is None:
            self.data_test = self.load(train=False)

    # ------------------------------------------------------------------ where batches are sliced
    def resident(self) -> bool:
        """Whether batches are sliced on the training device (``device_resident``, None = the machine's default)."""
        if self.device_resident is not None:
            return self.device_resident
        return machine_fast_defaults(self.placement()[0]).device_resident

    def resident_loader(self, dataset: TensorDataset | Subset, train: bool) -> DeviceResidentLoader:
        device, rank, world_size = self.placement()
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        # Train and val are Subsets of one TensorDataset: moving its tensors once serves both.
        base.tensors = tuple(t.to(device) for t in base.tensors)
        return DeviceResidentLoader(dataset, self.batch_size, shuffle=train, seed=self.seed, rank=rank,
                                    world_size=world_size)

    def train_dataloader(self) -> Any:
        if not self.resident():
            return super().train_dataloader()
        return self.resident_loader(self.require(self.data_train, "train"), train=True)

    def val_dataloader(self) -> Any:
        if not self.resident():
            return super().val_dataloader()
        return self.resident_loader(self.require(self.data_val, "val"), train=False)

    def test_dataloader(self) -> Any:
        if not self.resident():
            return super().test_dataloader()
        return self.resident_loader(self.require(self.data_test, "test"), train=False)
