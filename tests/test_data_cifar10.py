"""CIFAR10DataModule on pickle batches written by the test (real keys and shapes, different MD5s)."""
from __future__ import annotations

import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision
from torchvision.transforms import v2

from conftest import all_batches, network_batches, ready
from fake_datasets import write_cifar10
from lightning_lab.data import CIFAR10DataModule
from lightning_lab.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, n_per_batch=20, n_test=20)
    return root


def make(root, **kwargs) -> CIFAR10DataModule:
    return ready(CIFAR10DataModule(data_dir=str(root), batch_size=8, **kwargs))


def test_splits_shapes_and_dtypes(cifar_dir, skip_cifar_md5):
    dm = make(cifar_dir)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (90, 10, 20)
    assert not set(dm.train_indices) & set(dm.val_indices)
    assert sorted(dm.train_indices + dm.val_indices) == list(range(100))
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y = next(iter(loader))
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert dm.classes[0] == "airplane" and len(dm.classes) == 10


def test_split_is_seeded(cifar_dir, skip_cifar_md5):
    a, b, c = make(cifar_dir), make(cifar_dir), make(cifar_dir, seed=1)
    assert a.val_indices == b.val_indices and a.val_indices != c.val_indices


def reference(cifar_dir, mean, std, size=None) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's own decode + (resize +) normalise, one sample at a time."""
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if size is not None:
        steps.append(v2.Resize(size, antialias=True))
    dataset = torchvision.datasets.CIFAR10(str(cifar_dir), train=False,
                                           transform=v2.Compose([*steps, v2.Normalize(mean, std)]))
    x, y = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(x), torch.tensor(y)


def test_network_input_equals_torchvisions_decode_and_normalise(cifar_dir, skip_cifar_md5):
    dm = make(cifar_dir)
    x, y = network_batches(dm, dm.test_dataloader())
    x_ref, y_ref = reference(cifar_dir, dm.mean, dm.std)
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-5)
    assert torch.equal(y, y_ref)


def test_image_size_upsamples_on_the_device_with_the_weights_statistics(cifar_dir, skip_cifar_md5):
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1.transforms()
    dm = make(cifar_dir, image_size=96, normalization="imagenet")
    assert dm.input_shape == (3, 96, 96)
    x, _ = all_batches(dm.test_dataloader())
    assert x.shape[1:] == (3, 32, 32)  # stored at 32 px; only the device copy is upsampled
    x, _ = network_batches(dm, dm.test_dataloader())
    x_ref, _ = reference(cifar_dir, weights.mean, weights.std, size=96)
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-4)


def test_augmentation_only_on_train_and_before_the_resize(cifar_dir, skip_cifar_md5):
    plain, aug = make(cifar_dir), make(cifar_dir, augment=True, image_size=64)
    assert torch.equal(all_batches(aug.val_dataloader())[0], all_batches(plain.val_dataloader())[0])
    train = torch.utils.data.DataLoader(aug.data_train, batch_size=16)
    augmented, clean = network_batches(aug, train, training=True)[0], network_batches(aug, train)[0]
    assert augmented.shape == clean.shape == (90, 3, 64, 64) and not torch.allclose(augmented, clean)


def test_md5_check_is_kept(cifar_dir):
    """Without the test bypass, torchvision's MD5 check rejects the test-written files with our error."""
    with pytest.raises(DatasetNotFoundError, match="MD5") as info:
        make(cifar_dir, download=False)
    assert str(cifar_dir) in str(info.value)


def test_offline_without_download_names_dir_files_and_how_to_get_them(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as info:
            step()
        message = str(info.value)
        assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message
        assert "--data.download true" in message and CIFAR10DataModule.url in message


def test_failed_download_raises_dataset_not_found(tmp_path, no_network):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "Downloading CIFAR-10" in message and "name resolution" in message
    assert str(tmp_path) in message and CIFAR10DataModule.url in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_pickle_with_wrong_shapes_is_reported_by_name(tmp_path, skip_cifar_md5):
    folder = write_cifar10(tmp_path)
    bad = folder / "data_batch_3"
    with open(bad, "wb") as f:
        pickle.dump({"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20}, f)
    with pytest.raises(DatasetNotFoundError) as info:
        make(tmp_path)
    assert str(bad) in str(info.value) and "(N, 3072)" in str(info.value)


def test_text_file_as_batch_is_reported_by_name(tmp_path, skip_cifar_md5):
    folder = write_cifar10(tmp_path)
    bad = folder / "test_batch"
    bad.write_text("not a pickle")
    with pytest.raises(DatasetNotFoundError) as info:
        make(tmp_path)
    assert str(bad) in str(info.value)
