"""What every data module shares: the common arguments, the one split routine, the loaders and the device hook.

Conventions (all modules):
- ``batch_size`` is per device/process (under DDP the effective batch is ``batch_size * world_size``).
- ``prepare_data`` only downloads/writes files (local rank 0, assigns no state);
  ``setup(stage)`` builds datasets once (calling it again is a no-op).
- Loaders yield ``(x, y)`` as stored (uint8 images, float features); ``on_after_batch_transfer`` turns ``x``
  into what the network sees, batched on the training device, and augments only while training.
- Validation, test and predict read every sample exactly once, on any number of devices.
"""
from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_lab.errors import ConfigError

log = logging.getLogger("lightning_lab.data")


@rank_zero_only
def info(msg: str) -> None:
    """Log once (global rank 0) on the ``lightning_lab.data`` logger."""
    log.info(msg)


# --------------------------------------------------------------------------- the split
def check_split(name: str, value: int | float) -> None:
    """A split is a sample count >= 1 (int) or a fraction in (0, 1) (float)."""
    if (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0.0 < value < 1.0):
        return
    raise ConfigError(f"{name} must be a fraction in (0, 1) or a sample count >= 1, got {value!r}")


def split_count(name: str, value: int | float, n: int) -> int:
    """Number of samples ``value`` stands for out of ``n`` (at least 1, leaving at least 1)."""
    count = value if isinstance(value, int) else max(1, round(value * n))
    if count >= n:
        raise ConfigError(f"{name}={value!r} asks for {count} of only {n} samples; leave some for training")
    return count


def split_indices(n: int, seed: int, val_split: int | float, test_split: int | float | None = None,
                  stratify: Sequence[int] | torch.Tensor | None = None) -> tuple[list[int], list[int], list[int]]:
    """Seeded, disjoint (train, val, test) index lists covering range(n): test first (when ``test_split`` is
    given, else empty), then val from the rest; class-stratified when ``stratify`` holds the labels."""
    from sklearn.model_selection import train_test_split

    rest = np.arange(n)
    labels = None if stratify is None else np.asarray(stratify)
    test: Any = []
    try:
        if test_split is not None:
            n_test = split_count("test_split", test_split, n)
            rest, test = train_test_split(rest, test_size=n_test, stratify=labels, random_state=seed)
        n_val = split_count("val_split", val_split, len(rest))
        train, val = train_test_split(rest, test_size=n_val, random_state=seed,
                                      stratify=None if labels is None else labels[rest])
    except ValueError as error:  # sklearn: a stratified part smaller than the number of classes
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"val_split={val_split!r}, test_split={test_split!r} cannot be split by class "
                          f"from {n} samples: {error}") from error
    return sorted(map(int, train)), sorted(map(int, val)), sorted(map(int, test))


def generator_seed(seed: int, rank: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one (seed, global rank, epoch)."""
    return int(np.random.SeedSequence([seed % 2**32, rank, epoch]).generate_state(2, np.uint64)[0]) % 2**63


# --------------------------------------------------------------------------- training batches
def per_rank_samples(n: int, world_size: int) -> int:
    """Samples each rank reads per training epoch: ``n`` alone, or under DDP the length of the
    ``DistributedSampler`` Lightning (or ``DeviceResidentLoader``) shards the data with (last shard padded)."""
    if world_size <= 1:
        return n
    return len(DistributedSampler(range(n), num_replicas=world_size, rank=0, shuffle=False))


def drops_lone_last_sample(samples: int, batch_size: int) -> bool:
    """Whether a rank's training epoch drops its last batch: only when that batch would hold exactly one sample.

    BatchNorm cannot train on one sample ("Expected more than 1 value per channel"); dropping every partial
    batch instead would change every run whose last batch holds two or more samples, so only the lone
    sample is left out (it is read in another epoch's shuffle)."""
    return batch_size > 1 and samples % batch_size == 1


# --------------------------------------------------------------------------- the module base
def class_names(datamodule: Any, num_classes: int) -> list[str]:
    """The data module's class names (its `classes`), or the class numbers when it has none for `num_classes`."""
    names = getattr(datamodule, "classes", None)
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


class BaseDataModule(LightningDataModule):
    """The common arguments, loaders and batch hook. Subclasses set ``classes`` and ``input_shape``, fill
    ``data_train``/``data_val``/``data_test`` in ``setup`` and say in ``transform_batch`` what the network sees.

    Args:
        data_dir: folder holding (or receiving) the dataset files.
        batch_size: samples per batch *per device/process*.
        num_workers: DataLoader worker processes.
        val_split: held-out share of the training data: a fraction in (0, 1) or a sample count. Seeded.
        seed: seed of the split and of the training augmentation.
        augment: random augmentation of training batches (never of validation, test or predict).
        pin_memory / persistent_workers: passed to the DataLoaders.
        predict_path: image files, folders or globs ``predict`` classifies (default: the test split).
        predict_invert: invert those files' pixels first (a black-on-white drawing for a model trained on light
            strokes on a dark background, as the digits and MNIST are).
    """

    classes: list[str]
    input_shape: tuple[int, ...]

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0,
                 val_split: int | float = 0.1, seed: int = 42, augment: bool = False, pin_memory: bool = False,
                 persistent_workers: bool = False, predict_path: str | None = None,
                 predict_invert: bool = False) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers!r}")
        check_split("val_split", val_split)
        self.save_hyperparameters()  # also collects the subclass's arguments (Lightning walks the __init__ frames)
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_split = val_split
        self.seed = seed
        self.augment = augment
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.predict_path = predict_path
        self.predict_invert = predict_invert
        self.data_train: Dataset | None = None
        self.data_val: Dataset | None = None
        self.data_test: Dataset | None = None
        self._generator: tuple[tuple[str, int, int], torch.Generator] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # Lightning calls setup(stage) with "fit", "validate", "test" or "predict".
    @staticmethod
    def wants_fit(stage: str | None) -> bool:
        return stage in (None, "fit", "validate")

    @staticmethod
    def wants_test(stage: str | None) -> bool:
        return stage in (None, "test", "predict")

    def require(self, dataset: Dataset | None, name: str) -> Dataset:
        """The dataset, or an error saying which ``setup`` to call first."""
        if dataset is None:
            stage = "fit" if name in ("train", "val") else "test"
            raise RuntimeError(f"{type(self).__name__}: call setup({stage!r}) before {name}_dataloader()")
        return dataset

    # ------------------------------------------------------------------ placement
    def placement(self) -> tuple[torch.device, int, int]:
        """(device, global rank, world size) of the attached trainer; CPU, 0, 1 without one."""
        trainer = self.trainer
        if trainer is None:
            return torch.device("cpu"), 0, 1
        return trainer.strategy.root_device, trainer.global_rank, trainer.world_size

    # ------------------------------------------------------------------ loaders
    def loader(self, dataset: Dataset, train: bool, collate_fn: Any = None) -> DataLoader:
        """A DataLoader over ``dataset``; for evaluation under DDP with a sampler that pads nothing; for training
        without a last batch of one sample (see ``drops_lone_last_sample``)."""
        _, rank, world_size = self.placement()
        drop_last = train and drops_lone_last_sample(per_rank_samples(len(dataset), world_size), self.batch_size)
        sampler = None
        if not train and world_size > 1:
            # Lightning's own evaluation sampler pads the last shard (repeats samples) so that every rank
            # steps equally; this one gives each sample to exactly one rank, so test/acc is exact. Lightning
            # keeps a DistributedSampler it is given. Evaluation steps must then hold no per-step collective.
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers and self.num_workers > 0,
                          collate_fn=collate_fn or self.collate_fn(), drop_last=drop_last)

    def collate_fn(self) -> Any:
        """The collate of every loader (None: torch's default_collate)."""
        return None

    def train_dataloader(self) -> Any:
        return self.loader(self.require(self.data_train, "train"), train=True)

    def val_dataloader(self) -> Any:
        return self.loader(self.require(self.data_val, "val"), train=False)

    def test_dataloader(self) -> Any:
        return self.loader(self.require(self.data_test, "test"), train=False)

    def predict_dataloader(self) -> Any:
        """The test split (image modules: the user's files when ``predict_path`` is set), always through a
        DataLoader: its sampler gives the PredictionWriter each prediction's index, also under DDP."""
        if self.predict_path is not None:
            raise ConfigError(f"predict_path is for image data modules; {type(self).__name__} has no images")
        return self.loader(self.require(self.data_test, "test"), train=False)

    # ------------------------------------------------------------------ failures under DDP
    def on_exception(self, exception: BaseException) -> None:
        """Stop this node's other ranks when this process, the one that launched them, fails.

        ``prepare_data`` runs on local rank 0 only. When it raises (a missing dataset, a failed download), the
        other ranks are already waiting in the barrier before ``setup``: with gloo they die with a connection
        traceback, with NCCL they wait until the collective timeout (30 minutes by default) holding their
        GPUs. Local rank 0 started them through Lightning's launcher, so it kills them at once, as Lightning
        does on Ctrl+C; this process then reports the error as the run's only ``error:`` line. Ranks started by
        an external launcher (torchrun, SLURM) have none here to kill; their launcher stops the rest.
        """
        trainer = self.trainer
        launcher = None if trainer is None else trainer.strategy.launcher
        if launcher is not None and trainer.world_size > 1 and trainer.local_rank == 0:
            launcher.kill(signal.SIGTERM if sys.platform == "win32" else signal.SIGKILL)

    # ------------------------------------------------------------------ on the device
    def augmentation_generator(self, device: torch.device) -> torch.Generator:
        """The random source of training augmentation on ``device``: one stream per (seed, global rank, epoch),
        so DDP ranks draw different augmentations and a run (also one resumed at an epoch) repeats exactly.
        Workers draw nothing: augmentation runs here, in the training process."""
        trainer = self.trainer
        rank, epoch = (trainer.global_rank, trainer.current_epoch) if trainer is not None else (0, 0)
        key = (str(device), rank, epoch)
        if self._generator is None or self._generator[0] != key:
            generator = torch.Generator(device=device).manual_seed(generator_seed(self.seed, rank, epoch))
            self._generator = (key, generator)
        return self._generator[1]

    def is_training(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.training

    def transform_batch(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """What the network sees, from a stored batch already on the device (default: unchanged)."""
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning's hook for batched work on the device: ``batch[0]`` becomes the network's input; the rest
        (labels, or the indices of predicted files) is left as is."""
        if isinstance(batch, torch.Tensor):
            # Not a data batch: Lightning's model summary sends the model's example_input_array through this
            # hook, and that is already what the network takes.
            return batch
        x, *rest = batch
        return (self.transform_batch(x, self.is_training()), *rest)
