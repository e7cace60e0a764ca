"""Small datasets written in the real on-disk formats the product reads (no download needed)."""
from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPE_CODES = {np.dtype(np.uint8): 0x08}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write `array` as an IDX file: magic (0, 0, dtype code, ndim), big-endian int32 sizes, raw data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_DTYPE_CODES[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    path = Path(str(path) + ".gz") if compress else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def _class_images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Images whose brightness pattern depends on the label, so a model can learn them."""
    base = rng.integers(0, 60, size=(len(labels), *shape))
    bands = np.zeros((len(labels), *shape))
    rows = shape[-2]
    for i, label in enumerate(labels):
        band = slice(int(label) * rows // 10, (int(label) + 1) * rows // 10 + 1)
        bands[i, ..., band, :] = 190
    return np.clip(base + bands, 0, 255).astype(np.uint8)


def write_mnist(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0, compress: bool = False,
                layout: str = "torchvision") -> Path:
    """MNIST IDX files. layout="torchvision": root/MNIST/raw/<file>; layout="flat": root/<file>."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw" if layout == "torchvision" else Path(root)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images_name, labels_name = MNIST_FILES[split]
        write_idx(raw / images_name, _class_images(rng, labels, (28, 28)), compress)
        write_idx(raw / labels_name, labels, compress)
    return raw


def write_cifar10(root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10 python pickle batches under root/cifar-10-batches-py (real keys and shapes; MD5s differ)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        labels = rng.integers(0, 10, size=n)
        data = _class_images(rng, labels, (3, 32, 32)).reshape(n, 3072)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": data,
                 "filenames": [f"img_{name}_{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"],
            "num_cases_per_batch": n_per_batch, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def _jpeg_bytes(rng: np.random.Generator, colour: tuple[int, int, int], size: int) -> bytes:
    from PIL import Image

    pixels = np.clip(rng.normal(colour, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_pet_images(root: Path, n_per_class: int = 20, size: int = 48, seed: int = 0,
                     corrupt: bool = True) -> dict[str, list[Path]]:
    """A PetImages/{Cat,Dog} JPEG tree as in Microsoft's archive, including the kinds of bad files it has.

    Returns {"good": [...], "bad": [...]} with the paths written.
    """
    rng = np.random.default_rng(seed)
    pet = Path(root) / "PetImages"
    written: dict[str, list[Path]] = {"good": [], "bad": []}
    colours = {"Cat": (200, 120, 60), "Dog": (60, 120, 200)}
    for cls, colour in colours.items():
        folder = pet / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            path = folder / f"{i}.jpg"
            path.write_bytes(_jpeg_bytes(rng, colour, size))
            written["good"].append(path)
    if corrupt:
        zero = pet / "Cat" / f"{n_per_class}.jpg"
        zero.write_bytes(b"")
        full = _jpeg_bytes(rng, colours["Dog"], size)
        truncated = pet / "Dog" / f"{n_per_class}.jpg"
        truncated.write_bytes(full[: len(full) // 3])
        not_image = pet / "Dog" / "Thumbs.db"
        not_image.write_bytes(b"\xd0\xcf\x11\xe0 not an image")
        text_as_jpg = pet / "Cat" / f"{n_per_class + 1}.jpg"
        text_as_jpg.write_text("this is a text file named like a JPEG\n")
        written["bad"] += [zero, truncated, not_image, text_as_jpg]
    return written
