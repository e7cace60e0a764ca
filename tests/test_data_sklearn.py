"""MoonsDataModule and DigitsDataModule: in-memory, from scikit-learn, no download."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import all_batches, assert_augments_only_training, network_batches, ready
from lightning_lab.data import DigitsDataModule, MoonsDataModule
from lightning_lab.data.digits import intensities_to_uint8


def make(cls, **kwargs):
    return ready(cls(batch_size=32, **kwargs))


@pytest.mark.parametrize("cls, n", [(MoonsDataModule, 1000), (DigitsDataModule, 1797)])
def test_split_sizes_seeded_disjoint_and_stratified(cls, n):
    a, b, c = make(cls), make(cls), make(cls, seed=0)
    n_test = round(0.2 * n)
    n_val = round(0.1 * (n - n_test))
    assert (len(a.data_train), len(a.data_val), len(a.data_test)) == (n - n_test - n_val, n_val, n_test)
    assert (a.train_indices, a.val_indices, a.test_indices) == (b.train_indices, b.val_indices, b.test_indices)
    assert a.test_indices != c.test_indices
    sets = [set(a.train_indices), set(a.val_indices), set(a.test_indices)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]) and len(set().union(*sets)) == n
    y_test = all_batches(a.test_dataloader())[1]
    y_all = torch.cat([all_batches(a.train_dataloader())[1], all_batches(a.val_dataloader())[1], y_test])
    # stratified: each class's test count is its share of the data times n_test, to the nearest whole sample
    expected = torch.bincount(y_all, minlength=a.num_classes) * n_test / n
    assert (torch.bincount(y_test, minlength=a.num_classes) - expected).abs().max() < 1


def test_moons_batches_and_standardisation():
    dm = make(MoonsDataModule, n_samples=400, noise=0.1)
    x, y = all_batches(dm.train_dataloader())
    assert x.shape == (len(dm.data_train), 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(2), atol=1e-4, rtol=0)
    xv, _ = all_batches(dm.predict_dataloader())
    assert xv.shape == (len(dm.data_test), 2)


@pytest.mark.parametrize("size", [None, 28])
def test_digits_shapes_and_scaling(size):
    dm = make(DigitsDataModule, image_size=size)
    assert dm.input_shape == (1, size or 8, size or 8)
    stored, y = all_batches(dm.train_dataloader())
    assert stored.shape == (len(dm.data_train), 1, 8, 8) and stored.dtype == torch.uint8 and y.dtype == torch.int64
    x, _ = network_batches(dm, dm.train_dataloader())
    assert x.shape == (len(dm.data_train), *dm.input_shape) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.05  # the whole set's statistics
    assert abs(float(x.std()) - 1) < (0.05 if size is None else 0.2)  # upsampling smooths a little
    # normalised from [0, 1]: the smallest value is a 0 pixel
    assert float(x.min()) == pytest.approx(-dm.mean[0] / dm.std[0], abs=1e-5)


def test_digit_intensities_map_one_to_one_to_uint8_and_back():
    from sklearn.datasets import load_digits

    values = torch.arange(17)
    stored = intensities_to_uint8(values)
    assert stored.dtype == torch.uint8 and stored[0] == 0 and stored[-1] == 255
    assert torch.equal(torch.round(stored.float() * 16 / 255).long(), values)
    dm = ready(DigitsDataModule())
    images = torch.as_tensor(load_digits().images)
    x, _ = all_batches(dm.test_dataloader())
    assert torch.equal(torch.round(x.float() * 16 / 255), images[dm.test_indices].unsqueeze(1).float())


def test_saved_digit_comes_back_as_the_network_saw_it(tmp_path):
    dm = ready(DigitsDataModule(image_size=28))
    x, _ = all_batches(dm.test_dataloader())
    Image.fromarray(x[3, 0].numpy(), mode="L").save(tmp_path / "digit.png")
    with Image.open(tmp_path / "digit.png") as image:
        assert torch.equal(dm.image_to_tensor(image), x[3])


@pytest.mark.parametrize("cls", [MoonsDataModule, DigitsDataModule])
def test_augmentation_only_on_train(cls):
    assert_augments_only_training(make(cls), make(cls, augment=True), batch_size=64)


@pytest.mark.filterwarnings("ignore:.*pin_memory")
def test_loader_options_are_passed_through():
    dm = MoonsDataModule(batch_size=7, num_workers=0, pin_memory=True, persistent_workers=True)
    dm.setup()
    loader = dm.train_dataloader()
    assert loader.batch_size == 7 and loader.pin_memory and not loader.persistent_workers  # needs workers
    assert len(next(iter(loader))[0]) == 7
