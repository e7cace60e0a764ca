"""MNISTDataModule on IDX files written by the test (torchvision's layout: <root>/MNIST/raw)."""
from __future__ import annotations


import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import Subset
from torchvision.transforms import v2

from conftest import all_batches, assert_augments_only_training, network_batches, ready
from fake_datasets import MNIST_FILES, write_mnist
from lightning_lab.data import MNISTDataModule
from lightning_lab.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, n_train=120, n_test=40)
    return root


def make(root, **kwargs) -> MNISTDataModule:
    return ready(MNISTDataModule(data_dir=str(root), batch_size=16, **kwargs))


def test_split_sizes_fraction_and_count(mnist_dir):
    dm = make(mnist_dir)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (108, 12, 40)
    dm = make(mnist_dir, val_split=30)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (90, 30, 40)


def test_split_is_seeded_and_disjoint(mnist_dir):
    a, b, c = make(mnist_dir), make(mnist_dir), make(mnist_dir, seed=7)
    assert a.train_indices == b.train_indices and a.val_indices == b.val_indices
    assert a.val_indices != c.val_indices
    assert not set(a.train_indices) & set(a.val_indices)
    assert sorted(a.train_indices + a.val_indices) == list(range(120))


def test_batches_are_stored_uint8_and_the_network_gets_float(mnist_dir):
    dm = make(mnist_dir)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y = next(iter(loader))
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.uint8
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert 0 <= int(y.min()) and int(y.max()) < 10
    x, _ = network_batches(dm, dm.val_dataloader())
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and type(x) is torch.Tensor


def test_network_input_equals_torchvisions_decode_and_normalise(mnist_dir):
    dm = make(mnist_dir)
    reference = torchvision.datasets.MNIST(str(mnist_dir), train=False, transform=v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.1307,), (0.3081,))]))
    expected = torch.stack([reference[i][0] for i in range(len(reference))])
    x, y = network_batches(dm, dm.test_dataloader())
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert torch.equal(y, torch.as_tensor(reference.targets))


def test_train_and_val_are_disjoint_subsets_of_one_dataset(mnist_dir):
    dm = make(mnist_dir)
    assert isinstance(dm.data_train, Subset) and dm.data_train.dataset is dm.data_val.dataset
    xt, _ = all_batches(torch.utils.data.DataLoader(dm.data_train, batch_size=200))
    xv, _ = all_batches(dm.val_dataloader())
    full = dm.data_train.dataset.tensors[0]
    assert torch.equal(xt, full[dm.train_indices]) and torch.equal(xv, full[dm.val_indices])


def test_augmentation_only_on_train(mnist_dir):
    assert_augments_only_training(make(mnist_dir), make(mnist_dir, augment=True), batch_size=32)


def test_saved_test_images_come_back_as_the_network_saw_them(mnist_dir, tmp_path):
    dm = make(mnist_dir)
    x, _ = all_batches(dm.test_dataloader())
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(x[i, 0].numpy(), mode="L").save(path)
        with Image.open(path) as image:
            assert torch.equal(dm.image_to_tensor(image), x[i])
        Image.fromarray(x[i, 0].numpy(), mode="L").convert("RGB").save(tmp_path / "rgb.png")
        with Image.open(tmp_path / "rgb.png") as image:
            assert torch.equal(dm.image_to_tensor(image), x[i])


def test_setup_is_idempotent(mnist_dir):
    dm = make(mnist_dir)
    train = dm.data_train
    dm.setup("fit")
    dm.setup("test")
    assert dm.data_train is train


def test_gzipped_files_are_unpacked(tmp_path):
    write_mnist(tmp_path, compress=True)
    dm = make(tmp_path)
    assert len(dm.data_test) == 40


def check_offline_message(message: str, folder) -> None:
    assert str(folder) in message
    assert "train-images-idx3-ubyte" in message
    assert "--data.download true" in message and "https://" in message


def test_offline_without_download_names_dir_files_and_how_to_get_them(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    check_offline_message(str(info.value), tmp_path / "MNIST" / "raw")
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup()
    check_offline_message(str(info.value), tmp_path / "MNIST" / "raw")
    assert info.value.__cause__ is not None  # torchvision's error is kept as the cause


def test_failed_download_raises_dataset_not_found(tmp_path, no_network):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "Downloading MNIST" in message and "name resolution" in message and str(tmp_path) in message
    assert "https://" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_flat_layout_says_where_to_move_the_files(tmp_path):
    write_mnist(tmp_path, layout="flat")
    with pytest.raises(DatasetNotFoundError, match="MNIST/raw"):
        MNISTDataModule(data_dir=str(tmp_path), download=False).setup()


@pytest.mark.parametrize("which", [0, 1])
def test_text_file_named_like_idx_is_reported_by_name(tmp_path, which):
    raw = write_mnist(tmp_path)
    bad = raw / MNIST_FILES["train"][which]
    bad.write_text("this is not an IDX file\n" * 20)
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)
    dm.prepare_data()  # files are there: nothing to download
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup("fit")
    assert str(bad) in str(info.value) and "IDX" in str(info.value)


def test_images_and_labels_of_different_lengths_are_reported(tmp_path):
    write_mnist(tmp_path / "a", n_train=50)
    raw = write_mnist(tmp_path / "b", n_train=60)
    (raw / "train-labels-idx1-ubyte").write_bytes((tmp_path / "a/MNIST/raw/train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DatasetNotFoundError, match="labels"):
        make(tmp_path / "b")
