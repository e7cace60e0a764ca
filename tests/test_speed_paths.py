"""Every fast path gives the same results as the default path (no test here asserts a time):
channels_last, the device-resident loader (samples, epochs, DDP shards) and the batched augmentations,
bf16-mixed precision, torch.compile, and the speed flags through the CLI."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from fake_datasets import write_cifar10, write_mnist
from lightning_lab.cli import LabCLI, main
from lightning_lab.data import CIFAR10DataModule, MNISTDataModule
from conftest import REPO, all_batches, as_trainer, compiling_calls, conv_dtypes, quick_args
from lightning_lab.data.augment import random_affine, random_crop_flip, random_resized_crop_flip
from lightning_lab.data.device import DeviceResidentLoader
from lightning_lab.models import MLP, Classifier, ParametricCNN

QUICK = quick_args(max_epochs=2)
SMALL_CNN = dict(channels=(8, 16), hidden=(16,))


def small_cnn(input_shape: tuple[int, ...], **kwargs) -> Classifier:
    return Classifier(functools.partial(ParametricCNN, **SMALL_CNN), num_classes=10, input_shape=input_shape,
                      **kwargs)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, n_per_batch=20, n_test=20)  # 100 train images (90 train / 10 val), 20 test
    return root


def cifar(root: Path, **kwargs) -> CIFAR10DataModule:
    kwargs.setdefault("batch_size", 8)
    dm = CIFAR10DataModule(data_dir=str(root), download=False, val_split=10, **kwargs)
    dm.setup()
    return dm


def two_steps(model: L.LightningModule, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Losses of two SGD steps on one batch (the second shows the gradients agreed too)."""
    model.configure_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def batch(shape=(3, 16, 16), n=8, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


# --------------------------------------------------------------------------- model fast paths
def test_channels_last_gives_the_same_losses() -> None:
    x, y = batch()
    losses = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = small_cnn((3, 16, 16), channels_last=channels_last)
        losses[channels_last] = two_steps(model, x, y)
        if channels_last:
            conv = model.net.features[0].weight
            assert conv.is_contiguous(memory_format=torch.channels_last)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


class StepLosses(L.Callback):
    """Each step's loss and the dtype the network's output was computed in."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.dtypes: set[torch.dtype] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[override]
        self.losses.append(float(outputs["loss"].detach()))

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.net.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))


def fit_losses(precision: str, **model_kwargs) -> tuple[list[float], set[torch.dtype], bool]:
    """Per-step training losses of a short Lightning fit on a fixed batch sequence, the network's output dtypes,
    and whether every weight tensor moved."""
    L.seed_everything(0, verbose=False)
    x, y = batch(n=64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model = small_cnn((3, 16, 16), **model_kwargs)
    before = {k: v.detach().clone() for k, v in model.net.state_dict().items() if v.is_floating_point()}
    record = StepLosses()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[record])
    trainer.fit(model, train_dataloaders=loader)
    after = model.net.state_dict()
    moved = all(not torch.equal(before[k], after[k].float()) for k in before if "running" not in k
                and "num_batches" not in k)
    return record.losses, record.dtypes, moved


def test_bf16_mixed_loss_close_to_fp32() -> None:
    (fp32, fp32_dtypes, fp32_moved), (bf16, bf16_dtypes, bf16_moved) = fit_losses("32-true"), fit_losses("bf16-mixed")
    assert len(fp32) == len(bf16) == 4 and fp32_moved and bf16_moved
    assert fp32_dtypes == {torch.float32} and bf16_dtypes == {torch.bfloat16}  # autocast really ran in bf16
    # bf16 keeps ~3 significant digits; the losses of the same steps agree to about 1%.
    assert bf16 == pytest.approx(fp32, rel=3e-2)
    assert bf16 != fp32


def compiler_missing() -> str | None:
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (g++/clang++), none on PATH"
    return None


@pytest.mark.slow
@pytest.mark.skipif(compiler_missing() is not None, reason=str(compiler_missing()))
def test_compile_gives_the_same_losses() -> None:
    x, y = batch(shape=(12,), n=16)
    losses, keys, compiling = {}, {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Classifier(functools.partial(MLP, hidden=(16,)), num_classes=10, input_shape=(12,), compile=compiled)
        compiling[compiled] = compiling_calls(model.net)
        losses[compiled] = two_steps(model, x, y)
        keys[compiled] = list(model.state_dict())
    assert compiling == {False: [False, False], True: [True, True]}  # both steps ran the compiled network
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert keys[True] == keys[False]  # compiled in place: checkpoints keep the plain network's keys


# --------------------------------------------------------------------------- device-resident loader
def test_device_resident_covers_the_same_training_split_once_per_epoch(cifar_dir: Path,
                                                                       skip_cifar_md5: None) -> None:
    loader_dm, resident = cifar(cifar_dir), cifar(cifar_dir, device_resident=True)
    assert resident.train_indices == loader_dm.train_indices and resident.val_indices == loader_dm.val_indices
    loader = resident.train_dataloader()
    assert isinstance(loader, DeviceResidentLoader) and len(loader) == len(loader_dm.train_dataloader())
    images = loader_dm.data_train.dataset.tensors[0]
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)  # what Lightning's fit loop does before each epoch
        order = loader.epoch_indices()
        assert sorted(order.tolist()) == loader_dm.train_indices  # every training index exactly once
        x, y = all_batches(loader)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and len(y) == len(loader_dm.train_indices)
        assert torch.equal(x, images[order])  # the same stored images, sliced in the epoch's order
        orders.append(order.tolist())
    assert orders[0] != orders[1] != orders[2]  # a new permutation every epoch ...
    loader.set_epoch(1)
    assert loader.epoch_indices().tolist() == orders[1]  # ... reproducible from (seed, epoch)


def test_device_resident_val_and_test_equal_the_dataloaders(cifar_dir: Path, skip_cifar_md5: None) -> None:
    loaders = cifar(cifar_dir, augment=True)
    resident = cifar(cifar_dir, augment=True, device_resident=True)
    for name in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        xa, ya = all_batches(getattr(loaders, name)())
        xb, yb = all_batches(getattr(resident, name)())
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_device_resident_is_off_by_default_on_cpu(cifar_dir: Path, skip_cifar_md5: None) -> None:
    dm = cifar(cifar_dir)
    assert dm.device_resident is None and not dm.resident()
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)


def crops_and_flips(image: torch.Tensor, padding: int = 4) -> list[torch.Tensor]:
    """Every output RandomCrop(padding, zero fill) + horizontal flip can give for one image."""
    _, h, w = image.shape
    padded = F.pad(image, (padding,) * 4)
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            out += [crop, crop.flip(-1)]
    return out


def test_batched_crop_flip_gives_only_what_torchvision_random_crop_can() -> None:
    x = torch.rand(8, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    for k in range(8):
        assert any(torch.equal(out[k], c) for c in crops_and_flips(x[k])), f"image {k}"
    assert not torch.equal(out, x)


def test_batched_augmentations_keep_shape_and_identity_when_disabled() -> None:
    x = torch.rand(4, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_affine(x, g, degrees=0.0, translate=0.0), x)
    moved = random_affine(x, g)
    assert moved.shape == x.shape and not torch.equal(moved, x)
    assert random_crop_flip(torch.rand(4, 3, 32, 32), g).shape == (4, 3, 32, 32)
    y = torch.rand(4, 3, 20, 20)
    torch.testing.assert_close(random_resized_crop_flip(y, g, scale=(1.0, 1.0), ratio=(1.0, 1.0)).flip(-1).sum(),
                               y.flip(-1).sum(), rtol=1e-5, atol=1e-4)  # whole image, maybe mirrored
    assert random_resized_crop_flip(y, g).shape == y.shape


@pytest.mark.parametrize("n", [90, 91])
def test_device_resident_ddp_shards(n: int) -> None:
    data = TensorDataset(torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8), torch.arange(n) % 10)
    for epoch in (0, 1):
        train, evaluation = [], []
        for rank in range(2):
            loader = DeviceResidentLoader(data, 8, shuffle=True, seed=3, rank=rank, world_size=2)
            loader.set_epoch(epoch)
            train.append(loader.epoch_indices().tolist())
            assert sum(len(y) for _, y in loader) == len(train[-1])
            evaluation.append(DeviceResidentLoader(data, 8, rank=rank, world_size=2).epoch_indices().tolist())
        # training: equal length like Lightning's DistributedSampler (the last shard padded)
        assert len(train[0]) == len(train[1]) == -(-n // 2) and set(train[0]) | set(train[1]) == set(range(n))
        # evaluation: every sample exactly once over the ranks, no padding
        assert sorted(evaluation[0] + evaluation[1]) == list(range(n))


def test_device_resident_mnist_augments_through_the_hook(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=40, n_test=10)
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False, val_split=10, batch_size=8, augment=True,
                         device_resident=True)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.uint8 and y.shape == (8,)
    dm.trainer = as_trainer(training=True)
    augmented = dm.on_after_batch_transfer((x, y), 0)[0]
    dm.trainer = as_trainer(training=False)
    assert not torch.equal(augmented, dm.on_after_batch_transfer((x, y), 0)[0])


# --------------------------------------------------------------------------- through the CLI
def test_cli_fit_cifar_device_resident_bf16_channels_last(workdir: Path, skip_cifar_md5: None) -> None:
    """The speed flags given on the command line are what the fit ran with: the loader, the precision, the memory
    format and the dtype the convolutions computed in."""
    write_cifar10(workdir / "data", n_per_batch=20, n_test=20)
    cli = LabCLI(args=["--config", str(REPO / "configs" / "cifar.yaml"), "--data.init_args.download", "false",
                       "--data.init_args.val_split", "20", "--data.init_args.batch_size", "8",
                       "--data.init_args.device_resident", "true", "--trainer.precision", "bf16-mixed",
                       "--model.channels_last", "true", "--model.net.init_args.channels", "[8, 16]",
                       "--model.net.init_args.hidden", "[16]", *QUICK], run=False)
    convs = conv_dtypes(cli.model.net)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert isinstance(cli.trainer.train_dataloader, DeviceResidentLoader)
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.uses_channels_last
    assert cli.model.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert convs == {(torch.float32, torch.bfloat16)}  # float32 weights, convolutions autocast to bf16
    assert list((workdir / "checkpoints" / "cifar_cnn").glob("version_0/last.ckpt"))


@pytest.mark.slow
def test_cli_fit_with_loader_worker_flags(workdir: Path) -> None:
    main(["fit", "--config", "digits.yaml", "--data.init_args.num_workers", "1",
          "--data.init_args.persistent_workers", "true", "--data.init_args.pin_memory", "true", "--test_after_fit",
          "false", *quick_args(max_epochs=1)])
    assert list((workdir / "checkpoints" / "digits_cnn").glob("version_0/last.ckpt"))


def test_train_acc_logged_once_per_epoch_and_reset() -> None:
    """train/acc is updated per step but logged once per epoch (a self.log call per step costs ~1-2 ms)."""
    starts: list[int] = []

    class AtEpochStart(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            starts.append(int(pl_module.train_acc.update_count))

    x, y = batch(shape=(3, 8, 8), n=32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = small_cnn((3, 8, 8))
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[AtEpochStart()])
    trainer.fit(model, train_dataloaders=loader)
    assert starts == [0, 0, 0]  # a fresh accuracy every epoch
    assert "train/acc" in trainer.logged_metrics and "train/acc" in trainer.progress_bar_metrics
