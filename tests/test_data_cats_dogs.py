"""CatsDogsDataModule on a PetImages tree written by the test, with the archive's kinds of bad files."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from conftest import all_batches, network_batches, ready
from fake_datasets import write_pet_images
from lightning_lab.data import CatsDogsDataModule
from lightning_lab.data import cats_dogs
from lightning_lab.data.images import imagenet_stats
from lightning_lab.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    written = write_pet_images(root, n_per_class=20, size=48)
    return root, written


def make(root, **kwargs) -> CatsDogsDataModule:
    return ready(CatsDogsDataModule(data_dir=str(root), batch_size=8, image_size=32, **kwargs))


def test_corrupt_files_are_skipped_counted_logged_and_cached(tmp_path, caplog):
    written = write_pet_images(tmp_path, n_per_class=6, size=32)
    with caplog.at_level(logging.INFO, logger="lightning_lab.data"):
        dm = make(tmp_path)
    assert dm.num_skipped == 4
    assert sorted(dm.skipped_files) == sorted(str(p) for p in written["bad"])
    used = {path for path, _ in dm.data_train.dataset.dataset.samples}
    assert used == {str(p) for p in written["good"]}
    assert "skipped 4 unreadable files" in caplog.text
    cache = tmp_path / "PetImages" / ".corrupt_files.json"
    record = json.loads(cache.read_text())
    assert sorted(record["bad"]) == ["Cat/6.jpg", "Cat/7.jpg", "Dog/6.jpg", "Dog/Thumbs.db"]


def test_cache_is_reused_and_recomputed_when_the_tree_changes(tmp_path, monkeypatch):
    write_pet_images(tmp_path, n_per_class=6, size=32)
    make(tmp_path)
    calls = []
    real_scan = cats_dogs.scan_corrupt_files
    monkeypatch.setattr(cats_dogs, "scan_corrupt_files", lambda root: calls.append(root) or real_scan(root))
    dm = make(tmp_path)  # prepare_data + setup: both read the cache
    assert calls == [] and dm.num_skipped == 4
    (tmp_path / "PetImages" / "Dog" / "new.jpg").write_bytes(b"")  # tree changed: one more bad file
    dm = make(tmp_path)
    assert len(calls) == 1 and dm.num_skipped == 5


def test_split_80_10_10_seeded_and_disjoint(pets):
    root, written = pets
    a, b, c = make(root), make(root), make(root, seed=3)
    n = len(written["good"])
    assert (len(a.data_train), len(a.data_val), len(a.data_test)) == (32, 4, 4)
    assert (a.train_indices, a.val_indices, a.test_indices) == (b.train_indices, b.val_indices, b.test_indices)
    assert a.test_indices != c.test_indices
    sets = [set(a.train_indices), set(a.val_indices), set(a.test_indices)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(range(n))


def test_batches_are_decoded_uint8_and_the_network_gets_imagenet_normalised_floats(pets):
    root, _ = pets
    dm = make(root)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y = next(iter(loader))
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert dm.classes == ["cat", "dog"] and dm.input_shape == (3, 32, 32)
    # Each stored image is its file decoded, shorter side shrunk to 32 by area averaging (PIL's BOX filter), and
    # center-cropped.
    x, y = all_batches(dm.val_dataloader())
    folder = dm.data_val.dataset.dataset
    for k, index in enumerate(dm.val_indices):
        path, label = folder.samples[index]
        image = folder.loader(path)
        scale = 32 / min(image.size)
        shrunk = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
        expected = v2.functional.pil_to_tensor(v2.functional.center_crop(shrunk, [32, 32]))
        assert torch.equal(x[k], expected) and int(y[k]) == label
    net, _ = network_batches(dm, dm.val_dataloader())
    mean, std = imagenet_stats()
    expected = v2.functional.normalize(x.float() / 255, list(mean), list(std))
    torch.testing.assert_close(net, expected, rtol=0, atol=1e-5)


def test_augmentation_only_on_train(pets):
    root, _ = pets
    plain, aug = make(root), make(root, augment=True)
    assert torch.equal(all_batches(aug.val_dataloader())[0], all_batches(plain.val_dataloader())[0])
    train = torch.utils.data.DataLoader(aug.data_train, batch_size=8)
    augmented, clean = network_batches(aug, train, training=True)[0], network_batches(aug, train)[0]
    assert augmented.shape == clean.shape and not torch.allclose(augmented, clean)


def test_a_saved_image_comes_back_as_stored(pets, tmp_path):
    root, _ = pets
    dm = make(root)
    x, _ = all_batches(dm.test_dataloader())
    path = tmp_path / "pet.png"
    Image.fromarray(x[0].permute(1, 2, 0).numpy()).save(path)
    with Image.open(path) as image:
        assert torch.equal(dm.image_to_tensor(image), x[0])


def test_file_going_bad_after_setup_is_dropped_not_fatal(tmp_path, caplog):
    write_pet_images(tmp_path, n_per_class=10, size=32)
    dm = make(tmp_path)
    train_file = dm.data_train.dataset.dataset.samples[dm.train_indices[0]][0]
    with open(train_file, "r+b") as f:
        f.truncate(100)  # truncated JPEG
    with caplog.at_level(logging.WARNING, logger="lightning_lab.data"):
        seen = sum(len(y) for _, y in dm.train_dataloader())
    assert seen == len(dm.data_train) - 1
    assert dm.runtime_skipped == 1
    assert "skipping unreadable sample" in caplog.text


def test_offline_without_download_names_dir_and_how_to_get_them(tmp_path):
    dm = CatsDogsDataModule(data_dir=str(tmp_path), download=False)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as info:
            step()
        message = str(info.value)
        assert str(tmp_path / "PetImages") in message and "Cat/" in message and "Dog/" in message
        assert "--data.download true" in message and cats_dogs.PETIMAGES_URL in message


def test_failed_download_raises_dataset_not_found(tmp_path, no_network):
    dm = CatsDogsDataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "Downloading Cats-vs-Dogs" in message and "name resolution" in message
    assert str(tmp_path) in message and cats_dogs.PETIMAGES_URL in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


@contextlib.contextmanager
def http_folder(folder: Path) -> Iterator[str]:
    """`folder` served over HTTP on 127.0.0.1 (a free port) while the block runs: its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFileHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_download_is_extracted_into_data_dir(tmp_path, monkeypatch):
    """prepare_data downloads the archive with torchvision's real downloader (from a local server: torchvision's
    downloader reads the response length, which a file:// response lacks) and unpacks it into data_dir. The zip
    is laid out like Microsoft's: PetImages/{Cat,Dog}, with the kinds of bad files it has."""
    source, served, data_dir = tmp_path / "source", tmp_path / "served", tmp_path / "data"
    write_pet_images(source, n_per_class=5, size=32)
    archive = Path(shutil.make_archive(str(served / "pets"), "zip", root_dir=source, base_dir="PetImages"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with http_folder(served) as url:
        monkeypatch.setattr(cats_dogs, "PETIMAGES_URL", f"{url}/{archive.name}")  # the module checks no MD5
        dm = make(data_dir)
    assert (data_dir / cats_dogs.ARCHIVE_NAME).read_bytes() == archive.read_bytes()
    extracted, written = (cats_dogs.list_tree(root / "PetImages") for root in (data_dir, source))
    assert [p.relative_to(data_dir) for p in extracted] == [p.relative_to(source) for p in written]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(extracted, written))
    assert dm.num_skipped == 4 and len(dm.data_train) + len(dm.data_val) + len(dm.data_test) == 10


def test_a_class_folder_without_one_readable_image_is_one_clear_error(tmp_path):
    written = write_pet_images(tmp_path, n_per_class=3, size=32)
    for path in written["good"]:
        if path.parent.name == "Dog":
            path.write_bytes(b"")  # every Dog image empty: only unreadable files left there
    with pytest.raises(DatasetNotFoundError, match=r"Dog.*unreadable files skipped.*needs readable images"):
        make(tmp_path)


def test_image_size_null_is_refused_for_photos():
    from lightning_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="image_size must be a number of pixels"):
        CatsDogsDataModule(image_size=None)


def test_a_photo_stored_sideways_is_trained_on_upright(tmp_path):
    """As `classify` sees a user's photo: a PetImages JPEG with an EXIF orientation tag is loaded turned."""
    import numpy as np

    write_pet_images(tmp_path, n_per_class=10, size=32, corrupt=False)
    upright = np.zeros((64, 32, 3), dtype=np.uint8)  # tall: bright top half, dark bottom half
    upright[:32] = 250
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    for path in (tmp_path / "PetImages").glob("*/*.jpg"):
        Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    x, _ = all_batches(make(tmp_path).train_dataloader())
    rows = x.float().mean(dim=(0, 1, 3))  # the 32x32 centre crop of the upright 64x32 photo: bright top half
    assert rows[:12].mean() > 200 and rows[20:].mean() < 50
