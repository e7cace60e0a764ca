"""The speed settings `auto` means on each machine: the plain path on CPU; on a CUDA GPU (tests marked `gpu`, run
with `pytest -m gpu` there) bf16-mixed (16-mixed without bf16), channels_last, batches sliced on the device, and
torch.compile only for long runs."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import REPO, conv_dtypes, quick_args
from fake_datasets import write_mnist
from lightning_lab.fast_defaults import COMPILE_MIN_STEPS, FastDefaults, fast_defaults, machine_fast_defaults

PLAIN = FastDefaults(device_resident=False, channels_last=False, compile=False, precision=None)


@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_keeps_the_plain_defaults(bf16: bool) -> None:
    assert fast_defaults("cpu", bf16, total_steps=10 * COMPILE_MIN_STEPS) == PLAIN
    assert machine_fast_defaults("cpu", total_steps=10 * COMPILE_MIN_STEPS) == PLAIN


@pytest.mark.parametrize("bf16, precision", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_a_cuda_device_gets_the_fast_path_and_compiles_only_long_runs(bf16: bool, precision: str) -> None:
    fast = FastDefaults(device_resident=True, channels_last=True, compile=False, precision=precision)
    assert fast_defaults("cuda", bf16) == fast
    assert fast_defaults("cuda", bf16, total_steps=COMPILE_MIN_STEPS - 1) == fast
    assert fast_defaults("cuda", bf16, total_steps=COMPILE_MIN_STEPS).compile


# -- on a CUDA GPU ----------------------------------------------------------------------------------------------
def gpu_precision() -> str:
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


@pytest.mark.gpu
def test_this_gpu_gets_the_fast_path_from_its_own_answers() -> None:
    from lightning_lab.cli import auto_precision

    assert machine_fast_defaults("cuda") == FastDefaults(device_resident=True, channels_last=True, compile=False,
                                                         precision=gpu_precision())
    assert machine_fast_defaults("cuda", total_steps=COMPILE_MIN_STEPS).compile
    assert auto_precision(None, "auto") == auto_precision(None, "gpu") == gpu_precision()
    assert auto_precision(None, "cpu") is None and auto_precision("32-true", "auto") == "32-true"


@pytest.mark.gpu
def test_the_classifier_trains_in_mixed_precision_and_channels_last_on_cuda(tmp_path: Path) -> None:
    import lightning as L

    from lightning_lab.models import Classifier, ParametricCNN

    torch.manual_seed(0)
    model = Classifier(functools.partial(ParametricCNN, channels=[8, 16], hidden=[16]), num_classes=10,
                       input_shape=(3, 16, 16), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ran = conv_dtypes(model.net)
    data = DataLoader(TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))), batch_size=8)
    trainer = L.Trainer(accelerator="cuda", devices=1, precision=gpu_precision(), max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=data)
    assert trainer.global_step == 3 and trainer.strategy.root_device.type == "cuda"
    half = torch.bfloat16 if gpu_precision() == "bf16-mixed" else torch.float16
    assert ran == {(torch.float32, half)}, "float32 weights, convolutions in half precision"
    assert model.uses_channels_last  # channels_last left on auto
    assert model.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    unmoved = [name for name, p in model.named_parameters() if torch.equal(p.detach().cpu(), before[name])]
    assert not unmoved, f"not trained: {unmoved}"


@pytest.mark.gpu
def test_a_cli_fit_on_cuda_with_nothing_set_takes_the_fast_path(workdir: Path) -> None:
    from lightning_lab.cli import LabCLI
    from lightning_lab.data.device import DeviceResidentLoader

    write_mnist(workdir / "data", n_train=120, n_test=40)
    run = LabCLI(args=["fit", "--config", str(REPO / "configs" / "mnist.yaml"), "--trainer.devices", "1",
                       "--data.init_args.download", "false", "--data.init_args.val_split", "0.1",
                       "--data.init_args.num_workers", "0", "--test_after_fit", "false", *quick_args()])
    assert run.trainer.precision == gpu_precision()
    assert run.trainer.strategy.root_device.type == "cuda"
    assert isinstance(run.trainer.train_dataloader, DeviceResidentLoader)
    assert run.model.uses_channels_last
    assert torch.isfinite(run.trainer.callback_metrics["val/loss"])
