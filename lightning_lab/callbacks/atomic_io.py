"""Atomic checkpoint files: every checkpoint Lightning writes goes to a hidden partial file in the same folder and
is renamed over its final name, so a kill at any moment leaves either the old file or the new one, never half."""
from __future__ import annotations

import os
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_lab.atomic import atomic_write_with


def atomic_save(obj: Any, filepath: str | os.PathLike) -> None:
    """torch.save(obj, filepath), all or nothing."""
    atomic_write_with(filepath, lambda handle: torch.save(obj, handle))


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
