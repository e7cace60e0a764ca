"""All-or-nothing file writes: a hidden partial file in the target's folder, synced, then renamed over the
target, so a reader (or a kill at any moment) sees the old file or the new one, never half of one. Each write
has a partial file of its own, so two processes writing the same file at once each publish a whole file."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".partial"


def _new_partial_path(filepath: str | os.PathLike) -> Path:
    """A fresh name for one write of `filepath`: same folder (so the rename is atomic), hidden, unique to this
    write, and not ending in the target's suffix (so nothing mistakes it for a finished file)."""
    path = Path(filepath)
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")


def partial_files(filepath: str | os.PathLike) -> list[Path]:
    """The partial files of writes of `filepath` under way, or left by writes killed half-way."""
    path = Path(filepath)
    head, tail = f".{path.name}.", PARTIAL_SUFFIX
    found = path.parent.glob(".*" + PARTIAL_SUFFIX) if path.parent.is_dir() else []
    # the token has no dot: `.a.<token>.partial` is a write of `a`, never of `a.b`
    return sorted(p for p in found if p.name.startswith(head) and p.name.endswith(tail)
                  and "." not in p.name[len(head):-len(tail)])


@contextmanager
def atomic_open(filepath: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open(filepath, mode)` ("w" or "wb") whose result appears at `filepath` only if the block finishes."""
    target = Path(filepath)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _new_partial_path(target)
    try:
        with open(partial, mode.replace("w", "x"), **kwargs) as handle:  # "x": never another write's file
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
    """Delete what writes killed half-way left in `folder` (hidden partial files only); call it where no other
    process is writing into the folder (a run's own checkpoint folder as the run starts)."""
    for leftover in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        leftover.unlink(missing_ok=True)
