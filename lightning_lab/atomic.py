"""All-or-nothing file writes: a hidden partial file in the target's folder, synced, then renamed over the
target, so a reader (or a kill at any moment) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".partial"


def partial_path(filepath: str | os.PathLike) -> Path:
    """Where `filepath` is written before the rename: same folder (so the rename is atomic), hidden, and not
    ending in the target's suffix (so nothing mistakes it for a finished file)."""
    path = Path(filepath)
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


@contextmanager
def atomic_open(filepath: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open(filepath, mode)` whose result appears at `filepath` only if the block finishes."""
    target = Path(filepath)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        with open(partial, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def atomic_write_text(filepath: str | os.PathLike, text: str) -> Path:
    with atomic_open(filepath, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(filepath)


def atomic_write_with(filepath: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Let `write(binary_file)` fill `filepath` atomically (e.g. `lambda f: torch.save(obj, f)`)."""
    with atomic_open(filepath, "wb") as handle:
        write(handle)
    return Path(filepath)


def remove_partial_files(folder: str | os.PathLike) -> None:
    """Delete what a write killed half-way left in `folder` (hidden partial files only)."""
    for leftover in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        leftover.unlink(missing_ok=True)
