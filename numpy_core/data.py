"""Small data sets (two moons, sklearn's 8x8 digits, MNIST) and a seeded stratified split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mnist import load_mnist

DATASETS = ("moons", "digits", "mnist")


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def make_moons(n_samples: int = 1000, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (like sklearn.datasets.make_moons) with Gaussian noise."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(n_samples)
    return X[order], y[order]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 handwritten 8x8 digits (bundled with sklearn, no download), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits  # lazy: only this loader needs sklearn

    digits = sk_load_digits()
    return digits.data / 16.0, digits.target.astype(np.int64)


def _min_class_size(test_size: float) -> int:
    """The fewest samples a class needs for stratified_split to put at least one on each side."""
    k = 2
    while not 0 < int(round(k * test_size)) < k:
        k += 1
    return k


def stratified_split(X: np.ndarray, y: np.ndarray, test_size: float = 0.2, seed: int = 0):
    """(X_train, y_train, X_test, y_test) with each class split in the same proportion, seeded.

    ValueError if a class is too small to have at least one sample on each side."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_size))
        if not 0 < n_test < len(idx):  # each class on both sides, so neither split is empty or one-sided
            raise ValueError(f"class {c} has too few samples ({len(idx)}) to split with test_size {test_size} "
                             f"({'no test' if n_test == 0 else 'no training'} sample would be left); "
                             f"every class needs at least {_min_class_size(test_size)} samples")
        test.append(idx[:n_test])
    test_idx = np.sort(np.concatenate(test))
    mask = np.zeros(len(y), bool)
    mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    return X[train_idx], y[train_idx], X[test_idx], y[test_idx]


def load_dataset(name: str, *, seed: int = 0, noise: float = 0.2, n_samples: int = 1000, data_dir="data",
                 test_size: float = 0.2, dtype=np.float32) -> Dataset:
    """A named data set, split into train and test (MNIST keeps its official 60k/10k split)."""
    if name == "moons":
        X, y = make_moons(n_samples, noise, seed)
        try:
            parts = stratified_split(X, y, test_size, seed)
        except ValueError as exc:
            raise ValueError(f"moons with n_samples={n_samples}: {exc}") from None
        n_classes = 2
    elif name == "digits":
        X, y = load_digits()
        parts = stratified_split(X, y, test_size, seed)
        n_classes = 10
    elif name == "mnist":
        parts = load_mnist(data_dir, dtype=dtype)
        n_classes = 10
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    X_train, y_train, X_test, y_test = parts
    for split, labels in (("training", y_train), ("test", y_test)):
        if len(labels) == 0:
            raise ValueError(f"{name}: the {split} set is empty")
    return Dataset(name, X_train.astype(dtype), y_train, X_test.astype(dtype), y_test, n_classes)
