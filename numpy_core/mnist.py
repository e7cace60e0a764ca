"""MNIST from the original IDX files with NumPy only (gzip or not, flat or torchvision layout)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic: two zero bytes, a type code, the number of dimensions.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST IDX files are not in the data directory."""


class IDXFormatError(ValueError):
    """A file named like an IDX file is not one (wrong magic number or size)."""


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally .gz) into an array, checking its magic number and sizes."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IDXFormatError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or not 1 <= raw[3] <= 4:
        raise IDXFormatError(f"{path}: not an IDX file (bad magic number {raw[:4]!r}); "
                             f"expected 0x00 0x00 <type> <ndim> as in {MNIST_URL}")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IDXFormatError(f"{path}: IDX header says shape {shape} ({expected} bytes) "
                             f"but the file holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir: Path, name: str) -> Path | None:
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def find_mnist_files(data_dir) -> dict[str, Path]:
    """Paths of the four MNIST files in data_dir or data_dir/MNIST/raw; MNISTNotFoundError if any is missing."""
    data_dir = Path(data_dir)
    names = [n for pair in MNIST_FILES.values() for n in pair]
    found = {n: _find(data_dir, n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise MNISTNotFoundError(
            f"MNIST not found in {data_dir.resolve()} (missing: {', '.join(missing)}). Expected the four files "
            f"{', '.join(names)} (optionally .gz) in {data_dir} or {data_dir / 'MNIST' / 'raw'}. Get them with "
            f"`python -c \"import torchvision; torchvision.datasets.MNIST('{data_dir}', download=True)\"`, "
            f"or download the four .gz files from {MNIST_URL} into {data_dir}.")
    return found  # type: ignore[return-value]


def load_mnist(data_dir="data", flatten: bool = True, dtype=np.float32):
    """(X_train, y_train, X_test, y_test): pixels scaled to [0, 1], images flattened to 784 by default."""
    files = find_mnist_files(data_dir)
    out = []
    for images_name, labels_name in MNIST_FILES.values():
        images, labels = read_idx(files[images_name]), read_idx(files[labels_name])
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise IDXFormatError(f"{files[images_name]} / {files[labels_name]}: expected images (N, 28, 28) and "
                                 f"labels (N,), got {images.shape} and {labels.shape}")
        if labels.size and labels.max() > 9:
            raise IDXFormatError(f"{files[labels_name]}: labels must be 0..9, found {labels.max()}")
        X = images.astype(dtype)
        X *= np.asarray(1 / 255, dtype=X.dtype)
        flat = X.reshape(len(X), X.shape[1] * X.shape[2])  # not (len(X), -1): that fails on a file of 0 images
        out += [flat if flatten else X, labels.astype(np.int64)]
    return tuple(out)
