"""Atomic checkpoint files: every checkpoint Lightning writes goes to a hidden partial file in the same folder and
is renamed over its final name, so a kill at any moment leaves either the old file or the new one, never half."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

PARTIAL_SUFFIX = ".partial"


def partial_path(filepath: str | os.PathLike) -> Path:
    """Where `filepath` is written before the rename: same folder (so the rename is atomic), hidden, and not
    ending in .ckpt (so nothing mistakes it for a checkpoint)."""
    path = Path(filepath)
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def atomic_save(obj: Any, filepath: str | os.PathLike) -> None:
    """torch.save(obj, filepath), all or nothing: written to `partial_path(filepath)`, synced, then renamed."""
    target = Path(filepath)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        with open(partial, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic in the checkpoint's own folder.

    Lightning's own save stages the file in $TMPDIR; when that is another file system, its final move is a
    copy that a kill can leave half-done. Remote paths (s3://, ...) keep Lightning's behaviour.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_save(checkpoint, path)


def remove_partial_files(folder: str | os.PathLike) -> None:
    """Delete what a save killed half-way left in `folder` (hidden partial files, never checkpoints)."""
    for leftover in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        leftover.unlink(missing_ok=True)
