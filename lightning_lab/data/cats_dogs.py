"""Cats vs Dogs: Microsoft's ``PetImages`` archive (PetImages/Cat, PetImages/Dog, 12,500 JPEGs each).

The archive contains zero-byte, truncated and non-image files. ``prepare_data`` decodes every file once and
caches the unreadable ones in ``PetImages/.corrupt_files.json`` (keyed by a fingerprint of the tree, so it is
recomputed when files change); ``setup`` builds an ``ImageFolder`` that skips them. A file that still fails
at run time is dropped from its batch and counted instead of crashing the epoch.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets import utils as tv_utils

from lightning_lab.atomic import atomic_write_text
from lightning_lab.data.augment import random_resized_crop_flip
from lightning_lab.data.base import check_split, info, split_indices
from lightning_lab.data.images import ImageDataModule, imagenet_stats
from lightning_lab.data.decode import open_image, unreadable_reason
from lightning_lab.errors import ConfigError, DatasetNotFoundError, first_line

log = logging.getLogger("lightning_lab.data")

PETIMAGES_URL = ("https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
                 "kagglecatsanddogs_5340.zip")
ARCHIVE_NAME = "kagglecatsanddogs_5340.zip"
CLASS_DIRS = ("Cat", "Dog")
CACHE_NAME = ".corrupt_files.json"
CACHE_VERSION = 1


# --------------------------------------------------------------------------- the corrupt-file scan
def list_tree(root: Path) -> list[Path]:
    """Every file under root/Cat and root/Dog (what ImageFolder would look at), sorted."""
    files: list[Path] = []
    for cls in CLASS_DIRS:
        for dirpath, _, names in os.walk(root / cls, followlinks=True):
            files += [Path(dirpath) / n for n in names]
    return sorted(files)


def tree_fingerprint(root: Path, files: list[Path]) -> str:
    """Changes whenever a file is added, removed, resized or rewritten."""
    digest = hashlib.sha1()
    for path in files:
        st = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def scan_corrupt_files(root: str | Path, workers: int | None = None) -> dict[str, Any]:
    """Decode every file under root/{Cat,Dog}; return the cache record (fingerprint, bad files, counts)."""
    root = Path(root)
    files = list_tree(root)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        reasons = list(pool.map(unreadable_reason, files, chunksize=64))
    bad = [p.relative_to(root).as_posix() for p, reason in zip(files, reasons) if reason is not None]
    return {"version": CACHE_VERSION, "fingerprint": tree_fingerprint(root, files), "n_files": len(files),
            "bad": bad}


def load_or_scan_corrupt_files(root: str | Path) -> tuple[list[str], bool]:
    """The relative paths of unreadable files, from ``root/.corrupt_files.json`` if it matches the tree
    (returns ``(bad, True)``), otherwise from a fresh scan that rewrites the cache (``(bad, False)``)."""
    root = Path(root)
    cache = root / CACHE_NAME
    fingerprint = tree_fingerprint(root, list_tree(root))
    try:
        record = json.loads(cache.read_text())
        if record.get("version") == CACHE_VERSION and record.get("fingerprint") == fingerprint:
            return list(record["bad"]), True
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    info(f"Cats-vs-Dogs: checking every image under {root} once (cached in {cache})")
    record = scan_corrupt_files(root)
    try:
        atomic_write_text(cache, json.dumps(record, indent=1))  # other processes never read half a file
    except OSError as error:  # read-only data dir: still usable, just not cached
        log.warning("could not write %s (%s); the scan will be repeated next time", cache, error)
    return list(record["bad"]), False


# --------------------------------------------------------------------------- run-time safety net
class SkipUnreadable(Dataset):
    """Wraps a dataset; a sample whose file fails to load becomes ``None`` (dropped by ``collate_skipping``).

    ``num_skipped`` counts them in this process (with ``num_workers > 0`` each worker counts its own;
    every skip is logged as a warning either way).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[i]
        except Exception as error:  # a file that went bad after the scan: drop it, don't kill the epoch
            self.num_skipped += 1
            log.warning("skipping unreadable sample %d (%s)", i, first_line(error))
            return None


def collate_skipping(batch: list[Any], shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """default_collate without the ``None`` samples (an all-bad batch becomes an empty uint8 batch)."""
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return torch.empty(0, *shape, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return default_collate(kept)


# --------------------------------------------------------------------------- the module
class CatsDogsDataModule(ImageDataModule):
    """Cats (0) vs Dogs (1) from Microsoft's PetImages: JPEGs decoded in the loader (workers) and stored as uint8
    (3, image_size, image_size) (shorter side resized, center crop); normalised on the device.

    Args (besides the common ones):
        data_dir: folder holding ``PetImages/`` (the archive is downloaded and extracted here).
        num_workers: DataLoader worker processes (JPEG decoding is the bottleneck: use several).
        val_split / test_split: fractions (or counts) of the readable images; the rest (80%) trains.
            Seeded.
        download: download and extract the archive in ``prepare_data`` when ``PetImages`` is missing.
        augment: random resized crop (25-100% of the area) + horizontal flip, batched on the device.
        image_size: height and width the images are decoded to (and the network sees).
        normalization: ``dataset`` and ``imagenet`` both use ImageNet's mean/std here (PetImages are
            ImageNet-like photos; no separate statistics are shipped).

    After ``setup``: ``num_skipped`` (unreadable files left out), ``skipped_files`` (their paths).
    """

    classes = ["cat", "dog"]
    augmentation = staticmethod(random_resized_crop_flip)

    def __init__(self, image_size: int = 128, test_split: int | float = 0.1, download: bool = True,
                 **kwargs: Any) -> None:
        if image_size is None:  # the parent takes None (the stored size); photos have no one size
            raise ConfigError("image_size must be a number of pixels for Cats-vs-Dogs photos, got null")
        super().__init__(image_size=image_size, **kwargs)
        check_split("test_split", test_split)
        if isinstance(self.val_split, float) and isinstance(test_split, float) and self.val_split + test_split >= 1:
            raise ConfigError(
                f"val_split + test_split must leave images for training, got {self.val_split} + {test_split}")
        self.test_split = test_split
        self.download = download
        self.num_skipped: int | None = None
        self.skipped_files: list[str] = []

    @property
    def stored_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        return 3, self.image_size, self.image_size

    @property
    def mean(self) -> tuple[float, ...]:  # type: ignore[override]
        return imagenet_stats()[0]

    @property
    def std(self) -> tuple[float, ...]:  # type: ignore[override]
        return imagenet_stats()[1]

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "PetImages"

    @property
    def cache_file(self) -> Path:
        return self.root / CACHE_NAME

    @property
    def runtime_skipped(self) -> int:
        """Samples dropped at load time in this process (files that went bad after the scan)."""
        return sum(d.num_skipped for d in (self.data_train, self.data_val, self.data_test)
                   if isinstance(d, SkipUnreadable))

    def tree_present(self) -> bool:
        return all((self.root / c).is_dir() and any((self.root / c).iterdir()) for c in CLASS_DIRS)

    def not_found_error(self) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"Cats-vs-Dogs images not found: looked in {self.root} for Cat/ and Dog/ folders of JPEGs. "
            f"Get them with `--data.download true` (download=True) on a machine with internet access, "
            f"or download {PETIMAGES_URL} and unzip it into {self.data_dir}.")

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Download + extract the archive if the tree is missing, then scan for unreadable files (cached)."""
        if self.predicts_files_only():
            return
        if not self.tree_present():
            if not self.download:
                raise self.not_found_error()
            info(f"Cats-vs-Dogs: downloading {PETIMAGES_URL} into {self.data_dir} (~800 MB)")
            archive = Path(self.data_dir) / ARCHIVE_NAME
            try:
                tv_utils.download_and_extract_archive(PETIMAGES_URL, download_root=self.data_dir,
                                                      filename=ARCHIVE_NAME)
            except Exception as error:  # URLError, OSError, BadZipFile, RuntimeError
                if archive.is_file() and not self.tree_present():
                    archive.unlink()  # a partial download would otherwise be reused (no MD5 to check it)
                raise DatasetNotFoundError(
                    f"Downloading Cats-vs-Dogs into {self.data_dir} failed ({first_line(error)}). Check the "
                    f"network, or on a machine with internet access download {PETIMAGES_URL} and unzip it "
                    f"into {self.data_dir} (giving {self.root}/Cat and {self.root}/Dog).") from error
            if not self.tree_present():
                raise self.not_found_error()
        load_or_scan_corrupt_files(self.root)

    def setup(self, stage: str | None = None) -> None:
        """Build the seeded 80/10/10 split over the readable images once (all stages at once)."""
        if self.predicts_files_only():
            return
        if self.data_train is not None:
            return
        if not self.tree_present():
            raise self.not_found_error()
        bad, _ = load_or_scan_corrupt_files(self.root)
        bad_paths = {os.path.normcase(os.path.abspath(self.root / p)) for p in bad}
        try:
            # open_image: upright as the EXIF tag says, as `classify` opens a user's photo
            folder = ImageFolder(str(self.root), transform=self.to_stored_tensor(), loader=open_image,
                                 is_valid_file=lambda p: os.path.normcase(os.path.abspath(p)) not in bad_paths)
        except FileNotFoundError as err:  # torchvision: a class folder without one readable image
            raise DatasetNotFoundError(f"{self.root}: {first_line(err)} ({len(bad)} unreadable files skipped); "
                                       f"each of {list(CLASS_DIRS)} needs readable images: download the archive "
                                       f"again ({PETIMAGES_URL})") from err
        if folder.classes != list(CLASS_DIRS):
            raise DatasetNotFoundError(f"{self.root} should hold exactly the folders {list(CLASS_DIRS)}, "
                                       f"found {folder.classes}")
        self.num_skipped = len(bad)
        self.skipped_files = [str(self.root / p) for p in bad]
        if bad:
            info(f"Cats-vs-Dogs: skipped {len(bad)} unreadable files of {len(bad) + len(folder)} "
                 f"(listed in {self.cache_file})")
        self.train_indices, self.val_indices, self.test_indices = split_indices(
            len(folder), self.seed, self.val_split, self.test_split)
        self.data_train = SkipUnreadable(Subset(folder, self.train_indices))
        self.data_val = SkipUnreadable(Subset(folder, self.val_indices))
        self.data_test = SkipUnreadable(Subset(folder, self.test_indices))
        info(f"Cats-vs-Dogs: {len(self.train_indices)} train / {len(self.val_indices)} val / "
             f"{len(self.test_indices)} test images")

    def collate_fn(self) -> Any:
        return functools.partial(collate_skipping, shape=self.stored_shape)
