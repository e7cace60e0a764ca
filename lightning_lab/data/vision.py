"""Common part of the torchvision-backed image modules (MNIST, CIFAR-10).

Two paths that give the same normalised values for non-augmented data:
- ``in_memory=True`` (fast): after torchvision has loaded/verified the files, its decoded ``.data``/``.targets``
  are kept as uint8 (N, C, H, W) / int64 tensors; v2 transforms run on tensors, no PIL per sample.
- ``in_memory=False``: torchvision's dataset as is (a PIL image per sample) with the same v2 transforms.
- ``device_resident=True`` (fastest for small datasets): the decoded uint8 tensors are moved once to the
  training device (``trainer.strategy.root_device``); batches are sliced there from a seeded per-epoch
  permutation (sharded per DDP rank) and augmented batched on the device (see ``device.py``).
  ``num_workers``/``pin_memory``/``persistent_workers``/``in_memory`` are then unused.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lightning_lab.data.base import BaseDataModule, SubsetView, TensorImageDataset, info, split_indices
from lightning_lab.data.device import BatchAugment, DeviceResidentLoader
from lightning_lab.errors import DatasetNotFoundError


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def one_line(error: BaseException, limit: int = 300) -> str:
    """The whole error text on one line (torchvision puts the per-mirror reasons on later lines)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = f"{type(error).__name__}: {text}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TorchvisionImageDataModule(BaseDataModule):
    """Base for a torchvision classification dataset with an official train/test pair."""

    dataset_cls: type  # torchvision dataset class
    name: str  # human name in messages
    url: str  # where users can get the files by hand
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: float | int = 0.1, seed: int = 42, download: bool = True, augment: bool = False,
                 pin_memory: bool = False, persistent_workers: bool = False, in_memory: bool = True,
                 device_resident: bool = False) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, val_split=val_split,
                         seed=seed, augment=augment, pin_memory=pin_memory, persistent_workers=persistent_workers)
        self.download = download
        self.in_memory = in_memory
        self.device_resident = device_resident
        self._full_train: Any = None
        self._full_test: Any = None
        self._device_copies: dict[tuple[int, str], torch.Tensor] = {}

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
            f"Downloading {self.name} into {self.data_dir} failed ({one_line(error)}). "
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

    def load(self, train: bool) -> Any:
        """torchvision's dataset for the official split, with errors turned into ours."""
        self.prepare_local_files()
        try:
            dataset = self.dataset_cls(self.data_dir, train=train, download=False)
        except Exception as error:
            if self.missing_files():
                raise self.not_found_error() from error
            raise self.format_error(train, error) from error
        self.check_loaded(dataset, train)
        return dataset

    def tensors(self, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``to_tensors`` computed once per loaded dataset."""
        cached = getattr(dataset, "_lab_tensors", None)
        if cached is None:
            cached = self.to_tensors(dataset)
            dataset._lab_tensors = cached
        return cached

    def check_loaded(self, dataset: Any, train: bool) -> None:
        data, targets = self.tensors(dataset)
        expected = self.input_shape
        if tuple(data.shape[1:]) != expected or len(data) != len(targets) or len(data) == 0:
            files = self.train_files if train else self.test_files
            raise DatasetNotFoundError(
                f"{self.name} files {', '.join(files)} in {self.files_dir} hold {len(data)} images of shape "
                f"{tuple(data.shape[1:])} and {len(targets)} labels; expected images of shape {expected} "
                f"and one label each. Delete them and re-run with `--data.download true`.")
        if int(targets.min()) < 0 or int(targets.max()) >= self.num_classes:
            raise DatasetNotFoundError(f"{self.name} labels in {self.files_dir} are outside 0..{self.num_classes - 1}")

    @staticmethod
    def to_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, C, H, W) images and int64 (N,) labels from the torchvision dataset's decoded arrays."""
        raise NotImplementedError

    # ------------------------------------------------------------------ transforms
    def augmentations(self) -> list[Any]:
        """v2 augmentations for training (work on PIL images and on uint8 tensors alike)."""
        return []

    def transform(self, train: bool, pil: bool) -> v2.Compose:
        steps: list[Any] = [v2.ToImage()] if pil else []
        if train and self.augment:
            steps += self.augmentations()
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std), v2.ToPureTensor()]
        return v2.Compose(steps)

    def batch_augment(self) -> BatchAugment | None:
        """The training augmentation as one batched op on the device (device-resident path)."""
        return None

    def make_split(self, dataset: Any, indices: list[int] | None, train: bool) -> Dataset:
        if self.in_memory or self.device_resident:
            data, targets = self.tensors(dataset)
            augmented = train and self.augment  # random transforms must run per sample
            return TensorImageDataset(data, targets, indices, transform=self.transform(train, pil=False),
                                      batched=not augmented)
        view = copy.copy(dataset)  # shares the decoded arrays; only the transform differs
        view.transform = self.transform(train, pil=True)
        return SubsetView(view, indices if indices is not None else range(len(view)))

    def setup(self, stage: str | None = None) -> None:
        """Seeded train/val split of the official training set; the official test set as test (idempotent)."""
        if self._wants_fit(stage) and self.data_train is None:
            full = self.load(train=True)
            self._full_train = full
            train_idx, val_idx = split_indices(len(full), self.val_split, self.seed)
            self.train_indices, self.val_indices = train_idx, val_idx
            self.data_train = self.make_split(full, train_idx, train=True)
            self.data_val = self.make_split(full, val_idx, train=False)
            info(f"{self.name}: {len(train_idx)} train / {len(val_idx)} val samples "
                 f"({self.path_name()} path)")
        if self._wants_test(stage) and self.data_test is None:
            test = self.load(train=False)
            self._full_test = test
            self.data_test = self.make_split(test, None, train=False)

    # ------------------------------------------------------------------ device-resident loaders
    def path_name(self) -> str:
        if self.device_resident:
            return "device-resident tensors"
        return "in-memory tensors" if self.in_memory else "PIL"

    def _placement(self) -> tuple[torch.device, int, int]:
        """(device, global rank, world size) of the attached trainer; CPU, 0, 1 without one."""
        trainer = self.trainer
        if trainer is None:
            return torch.device("cpu"), 0, 1
        return trainer.strategy.root_device, trainer.global_rank, trainer.world_size

    def _on_device(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        """One copy per (tensor, device), shared by the train and val loaders (they index the same array)."""
        key = (id(tensor), str(device))
        if key not in self._device_copies:
            self._device_copies[key] = tensor.to(device)
        return self._device_copies[key]

    def device_loader(self, dataset: Any, indices: list[int] | None, train: bool) -> DeviceResidentLoader:
        data, targets = self.tensors(dataset)
        device, rank, world_size = self._placement()
        if indices is None:
            indices = list(range(len(data)))
        return DeviceResidentLoader(
            self._on_device(data, device), self._on_device(targets, device), indices, self.batch_size,
            self.mean, self.std, device=device, augment=self.batch_augment() if train and self.augment else None,
            shuffle=train, seed=self.seed, rank=rank, world_size=world_size)

    def train_dataloader(self) -> Any:
        if not self.device_resident:
            return super().train_dataloader()
        self._require(self.data_train, "train")
        return self.device_loader(self._full_train, self.train_indices, train=True)

    def val_dataloader(self) -> Any:
        if not self.device_resident:
            return super().val_dataloader()
        self._require(self.data_val, "val")
        return self.device_loader(self._full_train, self.val_indices, train=False)

    def test_dataloader(self) -> Any:
        if not self.device_resident:
            return super().test_dataloader()
        self._require(self.data_test, "test")
        return self.device_loader(self._full_test, None, train=False)

    def predict_dataloader(self) -> Any:
        return self.test_dataloader()
