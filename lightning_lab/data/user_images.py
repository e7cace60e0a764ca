"""A user's own image files (files, folders searched recursively, globs) as a dataset for `Trainer.predict`.

Every file is fully decoded once up front, in a thread pool, so the main process knows which ones are skipped
(not an image, truncated, empty) even when the DataLoader runs in worker processes. A file that still fails
later (changed on disk) is dropped from its batch by `UserImages.collate`; the prediction writer reports it.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from lightning_lab.data.decode import open_image, unreadable_reason
from lightning_lab.errors import LabError

GLOB_CHARS = ("*", "?", "[")


class ImageInputError(LabError, FileNotFoundError):
    """A path to classify does not exist, or none of the files is a readable image."""


def _is_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def _visible_files(folder: Path) -> list[Path]:
    """Every file under `folder` (recursive, sorted), leaving out hidden files and folders (.DS_Store, .git)."""
    found: list[Path] = []
    for dirpath, dirnames, names in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in sorted(names) if not n.startswith(".")]
    return found


def expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Files named by `paths` (files, folders searched recursively, globs), in the given order, without repeats."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = str(raw)
        if Path(path).exists():
            matches = [path]
        elif _is_glob(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise ImageInputError(f"no file matches {path}")
        else:
            raise ImageInputError(f"{path} does not exist")
        for match in map(Path, matches):
            files += _visible_files(match) if match.is_dir() else [match]
    seen: set[str] = set()
    unique = []
    for file in files:
        key = os.path.normcase(os.path.abspath(file))
        if key not in seen:
            seen.add(key)
            unique.append(file)
    return unique


class UserImages(Dataset):
    """Samples `(uint8 (C, H, W) image, index into .files)`; `.skipped` lists (path, reason) of unusable files.

    `to_tensor` is the data module's `image_to_tensor`: the CPU part of its evaluation transform, giving the
    stored size and channels of the training images for a file of any size and mode.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 to_tensor: Callable[[Image.Image], torch.Tensor], workers: int | None = None) -> None:
        candidates = expand_paths(paths)
        workers = workers or min(8, (os.cpu_count() or 1) + 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
            reasons = list(pool.map(unreadable_reason, candidates))
        self.files: list[Path] = [f for f, reason in zip(candidates, reasons) if reason is None]
        self.skipped: list[tuple[str, str]] = [(str(f), r) for f, r in zip(candidates, reasons) if r is not None]
        if not self.files:
            named = ", ".join(str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths))
            n = len(candidates)
            found = f"{n} file{'s' if n > 1 else ''}, none a readable image" if candidates else "no files"
            raise ImageInputError(f"nothing to classify in {named}: {found}")
        self.to_tensor = to_tensor
        self.sample_shape = tuple(to_tensor(open_image(self.files[0])).shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return self.to_tensor(open_image(self.files[i])), i
        except Exception:  # the file changed since the check: a placeholder that collate drops (index -1)
            return torch.zeros(self.sample_shape, dtype=torch.uint8), -1

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x uint8 (B, C, H, W), index int64 (B,))` without the samples that failed to load."""
        x = torch.stack([sample[0] for sample in batch])
        index = torch.tensor([sample[1] for sample in batch], dtype=torch.long)
        keep = index >= 0
        return x[keep], index[keep]
