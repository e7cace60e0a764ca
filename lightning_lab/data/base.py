"""What every data module shares: argument checks, seeded splits, loaders, in-memory tensor datasets.

Conventions (all modules):
- ``batch_size`` is per device/process (under DDP the effective batch is ``batch_size * world_size``).
- ``prepare_data`` only downloads/writes files (rank 0 of each node, assigns no state);
  ``setup(stage)`` builds datasets once (calling it again is a no-op).
- Train and val come from the same seeded permutation of the training set, but from two dataset
  views with different transforms, so training augmentation never reaches validation.
- Batches are ``(x: float32, y: int64)``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from lightning_lab.errors import ConfigError

log = logging.getLogger("lightning_lab.data")


@rank_zero_only
def info(msg: str) -> None:
    """Log once (global rank 0) on the ``lightning_lab.data`` logger."""
    log.info(msg)


# --------------------------------------------------------------------------- argument checks
def check_split(name: str, value: float | int, allow_zero: bool = False) -> None:
    """A split is a fraction in (0, 1) or a count >= 1 (an integral float >= 1 counts as a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a fraction in (0, 1) or a sample count >= 1, got {value!r}")
    if allow_zero and value == 0:
        return
    if isinstance(value, float) and 0.0 < value < 1.0:
        return
    if value >= 1 and float(value).is_integer():
        return
    raise ConfigError(f"{name} must be a fraction in (0, 1) or a sample count >= 1, got {value!r}")


def as_split(value: float | int) -> float | int:
    """A checked split as a float fraction or an int count (configs parse ``5000`` for ``float | int`` as 5000.0)."""
    return int(value) if value >= 1 else float(value)


def split_count(name: str, value: float | int, n: int) -> int:
    """Number of samples ``value`` stands for out of ``n`` (at least 1, leaving at least 1)."""
    count = int(value) if value >= 1 else max(1, round(value * n))
    if count >= n:
        raise ConfigError(f"{name}={value!r} asks for {count} of only {n} samples; leave some for training")
    return count


def seeded_permutation(n: int, seed: int) -> torch.Tensor:
    """The same permutation of range(n) for the same seed, on any machine (CPU generator)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def split_indices(n: int, val_split: float | int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, val) indices from one shuffled permutation: disjoint and covering range(n)."""
    n_val = split_count("val_split", val_split, n)
    perm = seeded_permutation(n, seed).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])


# --------------------------------------------------------------------------- datasets
class TensorImageDataset(Dataset):
    """Samples from whole in-memory tensors (kept as tensors so they can later be moved to a device).

    ``data``: uint8 (N, C, H, W) images or float features; ``targets``: int64 (N,).
    ``indices`` selects a view without copying; ``transform`` runs on one sample tensor
    (torchvision v2 transforms accept plain tensors as images). With ``batched=True`` (only for transforms
    without randomness, e.g. dtype + normalise) the DataLoader fetches a whole batch through
    ``__getitems__`` and the transform runs once on the (B, C, H, W) tensor.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, indices: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, batched: bool = False) -> None:
        if len(data) != len(targets):
            raise ValueError(f"{len(data)} samples but {len(targets)} targets")
        self.data = data
        self.targets = targets.long()
        self.indices = torch.as_tensor(list(indices) if indices is not None else range(len(data)),
                                       dtype=torch.long)
        self.transform = transform
        self.batched = batched

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batch fetch used by the DataLoader: one indexing op and (if ``batched``) one transform call."""
        if not self.batched:
            return [self[i] for i in items]
        j = self.indices[torch.as_tensor(items, dtype=torch.long)]
        x = self.data[j]
        if self.transform is not None:
            x = self.transform(x)
        return list(zip(x.as_subclass(torch.Tensor).unbind(0), self.targets[j].unbind(0)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.indices[i]
        x = self.data[j]
        if self.transform is not None:
            x = self.transform(x)
        return x.as_subclass(torch.Tensor), self.targets[j]


class SubsetView(Dataset):
    """``Subset`` that also exposes the parent's indices (for tests and bookkeeping)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


# --------------------------------------------------------------------------- the module base
class BaseDataModule(LightningDataModule):
    """Shared arguments, checks and loaders. Subclasses set ``num_classes``, ``input_shape``, ``classes``
    in ``__init__`` and fill ``data_train``/``data_val``/``data_test`` in ``setup``."""

    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[str]

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: float | int = 0.1, seed: int = 42, augment: bool = False,
                 pin_memory: bool = False, persistent_workers: bool = False) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        check_split("val_split", val_split)
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_split = as_split(val_split)
        self.seed = seed
        self.augment = augment
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.data_train: Dataset | None = None
        self.data_val: Dataset | None = None
        self.data_test: Dataset | None = None

    # Lightning calls setup(stage) with "fit", "validate", "test" or "predict".
    @staticmethod
    def _wants_fit(stage: str | None) -> bool:
        return stage in (None, "fit", "validate")

    @staticmethod
    def _wants_test(stage: str | None) -> bool:
        return stage in (None, "test", "predict")

    def _require(self, dataset: Dataset | None, name: str) -> Dataset:
        if dataset is None:
            stage = "fit" if name in ("train", "val") else "test"
            raise RuntimeError(f"{type(self).__name__}: call setup({stage!r}) before {name}_dataloader()")
        return dataset

    def collate_fn(self) -> Callable | None:
        """Override to use a custom collate (default: torch's default_collate)."""
        return None

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers and self.num_workers > 0,
                          collate_fn=self.collate_fn())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.data_train, "train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.data_val, "val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.data_test, "test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Predict on the test split."""
        return self._loader(self._require(self.data_test, "test"), shuffle=False)


def stratified_split_indices(targets: Sequence[int] | torch.Tensor, val_split: float | int,
                             test_split: float | int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Seeded, class-stratified (train, val, test) indices: test first, then val from the rest."""
    from sklearn.model_selection import train_test_split

    y = torch.as_tensor(targets).numpy()
    n = len(y)
    n_test = split_count("test_split", test_split, n)
    n_val = split_count("val_split", val_split, n - n_test)
    if n - n_test - n_val < 1:
        raise ConfigError(f"val_split={val_split!r} and test_split={test_split!r} leave no training samples")
    idx = list(range(n))
    rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=seed)
    return sorted(train), sorted(val), sorted(test)


class TabularDataModule(BaseDataModule):
    """In-memory data generated or shipped with scikit-learn (no download): subclasses implement ``build``
    returning ``(train, val, test)`` datasets; ``setup`` calls it once."""

    def build(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Nothing to download."""

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is None:
            self.data_train, self.data_val, self.data_test = self.build()
