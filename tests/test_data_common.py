"""Arguments and interface shared by every data module (no dataset files needed)."""
from __future__ import annotations

import pytest

from lightning_lab.data import (CatsDogsDataModule, CIFAR10DataModule, DigitsDataModule, MNISTDataModule,
                                MoonsDataModule)
from lightning_lab.errors import ConfigError

ALL = [MNISTDataModule, CIFAR10DataModule, CatsDogsDataModule, MoonsDataModule, DigitsDataModule]
EXPECTED = {
    MNISTDataModule: (10, (1, 28, 28)),
    CIFAR10DataModule: (10, (3, 32, 32)),
    CatsDogsDataModule: (2, (3, 128, 128)),
    MoonsDataModule: (2, (2,)),
    DigitsDataModule: (10, (1, 8, 8)),
}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_attributes_available_before_setup(cls, tmp_path):
    dm = cls(data_dir=str(tmp_path))
    num_classes, shape = EXPECTED[cls]
    assert dm.num_classes == num_classes and len(dm.classes) == num_classes
    assert dm.input_shape == shape
    assert dm.hparams["batch_size"] == 64 and dm.hparams["seed"] == 42 and dm.hparams["val_split"] == 0.1
    assert not any(tmp_path.iterdir()), "__init__ must not touch the disk"


BAD_ARGS = [
    {"batch_size": 0}, {"batch_size": -3}, {"num_workers": -1}, {"val_split": 0.0}, {"val_split": 1.0 + 1e-9},
    {"val_split": -0.2}, {"val_split": 1.5}, {"val_split": True}, {"val_split": float("nan")},
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
    (MoonsDataModule, {"test_split": 1.0 + 1e-9}),
])
def test_bad_specific_args_raise_config_error(cls, kwargs):
    with pytest.raises(ConfigError):
        cls(**kwargs)


def test_val_split_count_larger_than_dataset_raises_config_error():
    dm = MoonsDataModule(n_samples=100, val_split=500)
    with pytest.raises(ConfigError, match="val_split"):
        dm.setup("fit")


def test_signatures_parse_with_jsonargparse():
    """LightningCLI builds the config from the constructor signature: only simple types."""
    jsonargparse = pytest.importorskip("jsonargparse")
    for cls in ALL:
        parser = jsonargparse.ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "data")
        cfg = parser.parse_args(["--data.batch_size", "32", "--data.val_split", "0.2"])
        assert cfg.data.batch_size == 32 and cfg.data.val_split == 0.2
        cfg = parser.parse_args(["--data.val_split", "5000"])
        assert cfg.data.val_split == 5000
        assert cls(**{"val_split": cfg.data.val_split}).val_split == 5000 and isinstance(
            cls(val_split=5000.0).val_split, int)


def test_loaders_before_setup_say_what_to_do():
    with pytest.raises(RuntimeError, match="setup"):
        MoonsDataModule().train_dataloader()


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_trainer_drives_prepare_setup_and_all_loaders(tmp_path):
    """The Lightning contract end to end: Trainer calls prepare_data/setup and uses every loader."""
    import lightning.pytorch as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self, num_classes: int, input_shape: tuple[int, ...]):
            super().__init__()
            self.net = torch.nn.Linear(input_shape[0], num_classes)

        def step(self, batch):
            x, y = batch
            assert x.dtype == torch.float32 and y.dtype == torch.int64
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

    dm = MoonsDataModule(data_dir=str(tmp_path), n_samples=200, batch_size=16)
    model = Tiny(dm.num_classes, dm.input_shape)
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    predictions = trainer.predict(model, datamodule=dm)
    assert predictions[0].dtype == torch.int64
