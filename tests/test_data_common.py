"""Arguments, interface and the batch hook shared by every data module (no dataset files needed)."""
from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import jsonargparse
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from conftest import as_trainer, ready
from lightning_lab.data import (BaseDataModule, CatsDogsDataModule, CIFAR10DataModule, DigitsDataModule,
                                ImageDataModule, MNISTDataModule, MoonsDataModule)
from lightning_lab.data.images import image_to_tensor
from lightning_lab.errors import ConfigError

ALL = [MNISTDataModule, CIFAR10DataModule, CatsDogsDataModule, MoonsDataModule, DigitsDataModule]
IMAGES = [MNISTDataModule, CIFAR10DataModule, CatsDogsDataModule, DigitsDataModule]
EXPECTED = {
    MNISTDataModule: ([str(i) for i in range(10)], (1, 28, 28)),
    CIFAR10DataModule: (["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
                        (3, 32, 32)),
    CatsDogsDataModule: (["cat", "dog"], (3, 128, 128)),
    MoonsDataModule: (["upper moon", "lower moon"], (2,)),
    DigitsDataModule: ([str(i) for i in range(10)], (1, 8, 8)),
}
COMMON = ["data_dir", "batch_size", "num_workers", "val_split", "seed", "augment", "pin_memory",
          "persistent_workers", "predict_path"]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_attributes_available_before_setup(cls, tmp_path):
    dm = cls(data_dir=str(tmp_path))
    classes, shape = EXPECTED[cls]
    assert dm.classes == classes and dm.num_classes == len(classes)
    assert dm.input_shape == shape
    assert dm.hparams["batch_size"] == 64 and dm.hparams["seed"] == 42 and dm.hparams["val_split"] == 0.1
    assert not any(tmp_path.iterdir()), "__init__ must not touch the disk"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_subclasses_do_not_restate_the_common_arguments(cls):
    own = inspect.signature(cls.__init__).parameters
    assert not set(COMMON) & set(own), "common arguments belong to BaseDataModule"
    assert "kwargs" in own


BAD_ARGS = [
    {"batch_size": 0}, {"batch_size": -3}, {"num_workers": -1}, {"val_split": 0.0}, {"val_split": 1.0 + 1e-9},
    {"val_split": -0.2}, {"val_split": 1.5}, {"val_split": 0}, {"val_split": float("nan")},
    {"val_split": 5000.0},
]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("kwargs", BAD_ARGS, ids=str)
def test_bad_common_args_raise_config_error(cls, kwargs):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert "\n" not in str(info.value)
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize("cls, kwargs", [
    (CatsDogsDataModule, {"image_size": 0}), (CatsDogsDataModule, {"val_split": 0.5, "test_split": 0.5}),
    (CatsDogsDataModule, {"test_split": 0.0}), (DigitsDataModule, {"image_size": 4}),
    (DigitsDataModule, {"test_split": 2.5}), (MoonsDataModule, {"n_samples": 3}), (MoonsDataModule, {"noise": -1.0}),
    (MoonsDataModule, {"test_split": 1.0 + 1e-9}), (CIFAR10DataModule, {"image_size": 2}),
])
def test_bad_specific_args_raise_config_error(cls, kwargs):
    with pytest.raises(ConfigError):
        cls(**kwargs)


def test_val_split_count_larger_than_dataset_raises_config_error():
    dm = MoonsDataModule(n_samples=100, val_split=500)
    with pytest.raises(ConfigError, match="val_split"):
        dm.setup("fit")


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_jsonargparse_sees_every_argument_and_reads_val_split_as_int_or_float(cls):
    """LightningCLI builds the config from the constructor signatures, following **kwargs into the base."""
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "data")
    cfg = parser.parse_args(["--data.batch_size", "32", "--data.val_split", "0.2"])
    assert set(COMMON) <= set(vars(cfg.data))
    assert cfg.data.batch_size == 32 and cfg.data.val_split == 0.2 and isinstance(cfg.data.val_split, float)
    cfg = parser.parse_args(["--data.val_split", "5000"])
    assert cfg.data.val_split == 5000 and isinstance(cfg.data.val_split, int)
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_args(["--data.batch_size", "many"])


def test_loaders_before_setup_say_what_to_do():
    with pytest.raises(RuntimeError, match="setup"):
        MoonsDataModule().train_dataloader()


def test_predict_path_needs_images():
    dm = ready(MoonsDataModule(predict_path="somewhere"))
    with pytest.raises(ConfigError, match="predict_path"):
        dm.predict_dataloader()


# --------------------------------------------------------------------------- the batch hook
def test_hook_augments_only_while_training_and_leaves_the_rest_alone():
    dm = ready(DigitsDataModule(augment=True, batch_size=16))
    x, y = next(iter(dm.val_dataloader()))
    index = torch.arange(len(y))
    dm.trainer = as_trainer(training=False)
    evaluated, y_out, index_out = dm.on_after_batch_transfer((x, y, index), 0)
    again, _, _ = dm.on_after_batch_transfer((x, y, index), 0)
    assert evaluated.dtype == torch.float32 and torch.equal(evaluated, again)
    assert y_out is y and index_out is index
    dm.trainer = as_trainer(training=True)
    trained, _, _ = dm.on_after_batch_transfer((x, y, index), 0)
    assert trained.shape == evaluated.shape and not torch.equal(trained, evaluated)
    plain = ready(DigitsDataModule(augment=False, batch_size=16))
    plain.trainer = as_trainer(training=True)
    torch.testing.assert_close(plain.on_after_batch_transfer((x, y), 0)[0], evaluated)


@pytest.mark.parametrize("cls", [DigitsDataModule, MoonsDataModule])
def test_augmentation_differs_per_rank_and_epoch_and_repeats(cls):
    dm = ready(cls(augment=True, batch_size=16))
    x, _ = next(iter(dm.val_dataloader()))

    def draw(rank: int, epoch: int) -> torch.Tensor:
        dm.trainer = as_trainer(training=True, rank=rank, epoch=epoch)
        return dm.on_after_batch_transfer((x,), 0)[0]

    first = draw(0, 0)
    assert not torch.equal(first, draw(1, 0))
    assert not torch.equal(first, draw(0, 1))
    assert torch.equal(first, draw(0, 0))
    assert not torch.equal(first, draw(0, 0)), "later batches of the same epoch draw new augmentations"
    fresh = ready(cls(augment=True, batch_size=16))
    fresh.trainer = as_trainer(training=True)
    assert torch.equal(fresh.on_after_batch_transfer((x,), 0)[0], first), "reproducible from the seed"


# --------------------------------------------------------------------------- a user's image
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16", "1"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_image_to_tensor_takes_any_mode_and_size(mode, shape):
    image = Image.new("RGB", (400, 300), (200, 30, 90)).convert(mode)
    tensor = image_to_tensor(image, shape)
    assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == shape


def test_image_to_tensor_keeps_aspect_ratio_and_returns_stored_images_unchanged():
    stored = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    image = Image.fromarray(stored.permute(1, 2, 0).numpy())
    assert torch.equal(image_to_tensor(image, (3, 32, 32)), stored)
    for mode in ("RGBA", "P"):
        if mode == "P":
            image_p = Image.fromarray(stored.permute(1, 2, 0).numpy()).quantize(256)
            assert torch.equal(image_to_tensor(image_p, (3, 32, 32)), image_to_tensor(image_p.convert("RGB"),
                                                                                       (3, 32, 32)))
        else:
            assert torch.equal(image_to_tensor(image.convert(mode), (3, 32, 32)), stored)
    wide = Image.new("L", (300, 100), 0)
    wide.paste(255, (100, 0, 200, 100))  # a white square in the middle of a black band
    tensor = image_to_tensor(wide, (1, 28, 28))
    assert int(tensor.min()) > 200, "the center crop keeps the square, not the black sides squeezed in"


@pytest.mark.parametrize("cls", IMAGES, ids=lambda c: c.__name__)
def test_every_image_module_says_what_the_network_sees(cls):
    dm = cls()
    assert isinstance(dm, ImageDataModule) and isinstance(dm, BaseDataModule)
    image = Image.new("RGB", (640, 480), (10, 200, 30))
    tensor = dm.image_to_tensor(image)
    assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == dm.stored_shape
    dm.trainer = as_trainer(training=False)
    x = dm.on_after_batch_transfer((tensor[None],), 0)[0]
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == dm.input_shape


def test_imagenet_normalization_uses_the_weights_own_statistics():
    from torchvision.models import ResNet18_Weights

    expected = ResNet18_Weights.IMAGENET1K_V1.transforms()
    dm = CIFAR10DataModule(normalization="imagenet", image_size=64)
    assert dm.normalization_stats() == (tuple(expected.mean), tuple(expected.std))
    assert dm.input_shape == (3, 64, 64)
    gray = MNISTDataModule(normalization="imagenet")
    assert gray.normalization_stats() == ((sum(expected.mean) / 3,), (sum(expected.std) / 3,))
    assert CIFAR10DataModule().normalization_stats() == (CIFAR10DataModule.mean, CIFAR10DataModule.std)


# --------------------------------------------------------------------------- with a Trainer
class Tiny(pl.LightningModule):
    """A linear model that checks what reaches it."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    def step(self, batch):
        x, y = batch
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == self.input_shape and y.dtype == torch.int64
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def training_step(self, batch, _):
        return self.step(batch)

    def validation_step(self, batch, _):
        self.step(batch)

    def test_step(self, batch, _):
        self.step(batch)

    def predict_step(self, batch, _):
        return self.net(batch[0]).argmax(1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:.*LeafSpec", "ignore:.*does not have many workers", "ignore:.*Lazy modules")
@pytest.mark.parametrize("dm", [MoonsDataModule(n_samples=200, batch_size=16, augment=True),
                                DigitsDataModule(batch_size=16, augment=True, image_size=12)],
                         ids=lambda d: type(d).__name__)
def test_trainer_drives_prepare_setup_hook_and_all_loaders(dm, tmp_path):
    """The Lightning contract end to end: Trainer calls prepare_data/setup, every loader, and the batch hook."""
    model = Tiny(dm.num_classes, dm.input_shape)
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    predictions = trainer.predict(model, datamodule=dm)
    assert predictions[0].dtype == torch.int64


# --------------------------------------------------------------------------- a last training batch of one sample
def sizes(loader) -> list[int]:
    return [len(batch[1]) for batch in loader]


def placed(dm: BaseDataModule, rank: int, world_size: int) -> BaseDataModule:
    """``dm`` as seen from one rank of a ``world_size``-process run (a stand-in Trainer)."""
    dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, current_epoch=0, training=True,
                                 strategy=SimpleNamespace(root_device=torch.device("cpu")))
    return dm


class Samples(BaseDataModule):
    """``n`` training samples (1x2x2 images, so a network's feature maps reach 1x1) and ``n`` val samples."""

    classes = ["a", "b"]
    input_shape = (1, 2, 2)

    def __init__(self, n: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = n

    def setup(self, stage=None) -> None:
        generator = torch.Generator().manual_seed(0)
        x, y = torch.randn(self.n, *self.input_shape, generator=generator), torch.arange(self.n) % 2
        self.data_train = self.data_val = TensorDataset(x, y)


# (samples, batch size, processes) -> each rank's training batch sizes
LAST_BATCH_CASES = {
    (9, 4, 1): [4, 4],  # a last batch of one is dropped
    (10, 4, 1): [4, 4, 2],  # any other last batch stays: runs like these train as they always did
    (12, 4, 1): [4, 4, 4],
    (3, 1, 1): [1, 1, 1],  # batch_size 1: every batch holds one sample, none is dropped
    (17, 4, 2): [4, 4],  # per rank: DistributedSampler gives each rank ceil(17 / 2) = 9 samples
    (19, 4, 2): [4, 4, 2],
    (13, 4, 3): [4],  # 5 per rank
}


@pytest.mark.parametrize("case", LAST_BATCH_CASES, ids=str)
def test_training_drops_only_a_last_batch_of_one_sample_per_rank(case: tuple[int, int, int]) -> None:
    from torch.utils.data import DataLoader, DistributedSampler

    from lightning_lab.data.device import DeviceResidentLoader

    n, batch_size, world_size = case
    evaluated = [0, 0]
    for rank in range(world_size):
        dm = placed(Samples(n, batch_size=batch_size), rank, world_size)
        dm.setup()
        loader = dm.train_dataloader()
        if world_size > 1:  # as Lightning re-creates a training DataLoader under DDP: its arguments, sharded
            loader = DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last,
                                sampler=DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank))
        assert sizes(loader) == LAST_BATCH_CASES[case]
        resident = DeviceResidentLoader(dm.data_train, batch_size, shuffle=True, rank=rank, world_size=world_size)
        assert sizes(resident) == LAST_BATCH_CASES[case] and len(resident) == len(LAST_BATCH_CASES[case])
        evaluated[0] += sum(sizes(dm.val_dataloader()))
        evaluated[1] += sum(sizes(DeviceResidentLoader(dm.data_val, batch_size, rank=rank, world_size=world_size)))
    assert evaluated == [n, n]  # evaluation still reads every sample once


def test_batch_norm_trains_when_the_samples_leave_one_over(tmp_path) -> None:
    from lightning_lab.models import Classifier, ParametricCNN

    # 9 samples in batches of 4: without the drop, BatchNorm gets one sample of 1x1 maps in the 3rd step
    model = Classifier(functools.partial(ParametricCNN, channels=[4, 4], hidden=[]), num_classes=2,
                       input_shape=(1, 2, 2))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=Samples(9, batch_size=4))
    assert trainer.global_step == 2


def test_16_and_32_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    from lightning_lab.data.decode import open_image

    ramp = np.linspace(0, 2**16 - 1, 64).round().astype(np.uint16).reshape(8, 8)
    expected = torch.from_numpy(np.rint(ramp / 257).astype(np.uint8))[None]
    Image.fromarray(ramp).save(tmp_path / "depth.png")  # a 16-bit grayscale PNG
    sixteen = open_image(tmp_path / "depth.png")
    assert sixteen.mode.startswith("I")
    assert torch.equal(image_to_tensor(sixteen, (1, 8, 8)), expected)
    assert torch.equal(image_to_tensor(Image.fromarray(ramp.astype(np.int32)), (1, 8, 8)), expected)  # mode I
    wide = np.linspace(0, 2**31 - 1, 64).reshape(8, 8).astype(np.int32)  # 32-bit values beyond 16 bits
    tensor = image_to_tensor(Image.fromarray(wide), (1, 8, 8))
    assert tensor[0, 0, 0] == 0 and tensor[0, -1, -1] == 255 and torch.equal(tensor.flatten().sort()[0],
                                                                              tensor.flatten())
    assert torch.equal(image_to_tensor(sixteen, (3, 8, 8)), expected.expand(3, 8, 8))


def test_float_grayscale_in_0_1_or_0_255_is_scaled_to_8_bits_not_clipped(tmp_path):
    from lightning_lab.data.decode import open_image

    ramp = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    expected = torch.from_numpy(ramp)[None]
    Image.fromarray((ramp / 255).astype(np.float32), mode="F").save(tmp_path / "unit.tiff")  # a float TIFF
    unit = open_image(tmp_path / "unit.tiff")
    assert unit.mode == "F"
    assert torch.equal(image_to_tensor(unit, (1, 8, 8)), expected)
    assert torch.equal(image_to_tensor(Image.fromarray(ramp.astype(np.float32), mode="F"), (1, 8, 8)), expected)


def test_a_drawing_on_a_transparent_background_reads_as_black_on_white(tmp_path):
    from lightning_lab.data.decode import open_image

    drawing = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black everywhere ...
    drawing[2:6, 3, 3] = 255  # ... but for an opaque black stroke
    drawing[0, 0] = (0, 0, 0, 128)  # and a half-transparent black pixel
    Image.fromarray(drawing, mode="RGBA").save(tmp_path / "stroke.png")
    expected = torch.full((1, 8, 8), 255, dtype=torch.uint8)
    expected[0, 2:6, 3] = 0
    expected[0, 0, 0] = 127
    for image in (open_image(tmp_path / "stroke.png"), Image.open(tmp_path / "stroke.png").convert("LA")):
        tensor = image_to_tensor(image, (1, 8, 8))
        assert (tensor.int() - expected.int()).abs().max() <= 1, image.mode
        assert torch.equal(image_to_tensor(image, (3, 8, 8))[0], tensor[0]), image.mode
    palette = Image.fromarray((drawing[..., 3] > 200).astype(np.uint8), mode="P")  # index 0 transparent
    palette.putpalette([255, 0, 0, 0, 0, 0])
    palette.info["transparency"] = 0
    assert torch.equal(image_to_tensor(palette, (1, 8, 8))[0] == 0, expected[0] == 0)


def test_a_photo_is_turned_upright_as_its_exif_orientation_says(tmp_path):
    from lightning_lab.data.decode import open_image, unreadable_reason
    from lightning_lab.data.user_images import UserImages

    upright = np.zeros((40, 20, 3), dtype=np.uint8)  # tall: bright top half, dark bottom half
    upright[:20] = 250
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image = open_image(tmp_path / "photo.jpg")
    assert image.size == (20, 40)
    pixels = np.asarray(image.convert("L")).astype(int)
    assert pixels[:15].mean() > 200 and pixels[25:].mean() < 50
    assert unreadable_reason(tmp_path / "photo.jpg") is None
    sample, _ = UserImages(tmp_path / "photo.jpg", functools.partial(image_to_tensor, shape=(1, 40, 20)))[0]
    assert torch.equal(sample, image_to_tensor(image, (1, 40, 20)))
