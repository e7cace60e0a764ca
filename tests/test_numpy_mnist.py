"""The MNIST IDX reader on small files written in the real format."""
from __future__ import annotations

import numpy as np
import pytest

from fake_datasets import write_idx, write_mnist
from numpy_core import IDXFormatError, MNISTNotFoundError, load_mnist, read_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_load_mnist_both_layouts_gzip_and_plain(tmp_path, compress, layout):
    write_mnist(tmp_path, n_train=30, n_test=12, seed=1, compress=compress, layout=layout)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (30, 784) and X_test.shape == (12, 784)
    assert X_train.dtype == np.float32 and 0 <= X_train.min() and X_train.max() <= 1 and X_train.max() > 0.5
    assert y_train.shape == (30,) and y_test.shape == (12,) and y_train.max() <= 9


def test_read_idx_roundtrip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=True)
    np.testing.assert_array_equal(read_idx(path), images)
    raw = path.read_bytes()
    assert path.name.endswith(".gz") and raw[:2] == b"\x1f\x8b"


def test_read_idx_checks_sizes(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])  # truncated payload
    with pytest.raises(IDXFormatError, match="t10k-labels-idx1-ubyte.*10"):
        read_idx(path)


def test_text_file_named_as_idx_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, n_train=5, n_test=5, layout="flat")
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.*not an IDX file"):
        load_mnist(tmp_path)


def test_missing_files_error_names_dir_files_and_how_to_get_them(tmp_path):
    with pytest.raises(MNISTNotFoundError) as info:
        load_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "nowhere" in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "torchvision.datasets.MNIST" in message and "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
