"""The Classifier and its networks: every choice builds and trains a step, inits match their schemes, ResNet-18
loads weights as asked, every CPU precision trains, a NaN loss is caught without a per-step host read, T_max
follows max_epochs, and staged fine-tuning keeps DDP ranks identical."""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_lab.errors import ConfigError, WeightsError
from lightning_lab.callbacks import StagedFinetuning
from lightning_lab.models import MLP, Classifier, NonFiniteLossError, ParametricCNN, ResNet18
from lightning_lab.models.layers import GlobalAvgPool, init_weights
from lightning_lab.models.nonfinite import NonFiniteLossWatch
from conftest import REPO, compiling_calls, conv_dtypes

ACTIVATIONS = ["relu", "tanh", "leaky_relu"]
INITS = ["xavier", "kaiming", "random"]
OPTIMIZERS = {
    "sgd": functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
    "adam": functools.partial(torch.optim.Adam, lr=1e-3),
    "rmsprop": functools.partial(torch.optim.RMSprop, lr=1e-3),
}


def cnn(**kwargs) -> functools.partial:
    return functools.partial(ParametricCNN, **{"channels": [8, 16], "hidden": [16], **kwargs})


def images(n: int = 16, shape: tuple[int, ...] = (1, 8, 8), classes: int = 10, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=generator), torch.randint(0, classes, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    settings = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    limit_val_batches=0)
    return L.Trainer(**{**settings, **kwargs})


def _train_step(model: Classifier, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    optimizer = model.configure_optimizers()
    loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("activation,init,optimizer", list(itertools.product(ACTIVATIONS, INITS, OPTIMIZERS)))
def test_every_activation_init_optimizer_builds_and_steps(activation: str, init: str, optimizer: str) -> None:
    torch.manual_seed(0)
    model = Classifier(cnn(activation=activation, init=init), num_classes=10, input_shape=(1, 8, 8),
                       optimizer=OPTIMIZERS[optimizer])
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    before = [p.detach().clone() for p in model.parameters()]
    loss = _train_step(model, batch)
    assert math.isfinite(loss)
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(changed), "every parameter should move after one optimizer step"
    activation_type = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}[activation]
    assert any(isinstance(m, activation_type) for m in model.net.modules())


def test_the_classifier_gives_the_net_input_shape_and_num_classes() -> None:
    model = Classifier(functools.partial(MLP, hidden=[5]), num_classes=3, input_shape=(2,))
    assert isinstance(model.net, MLP) and model.net.layers[1].in_features == 2
    assert model(torch.randn(4, 2)).shape == (4, 3)
    with pytest.raises(ConfigError, match="num_classes"):
        Classifier(MLP, num_classes=1, input_shape=(2,))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 128, 128), (1, 8, 8)])
def test_cnn_handles_input_sizes(shape: tuple[int, int, int]) -> None:
    net = ParametricCNN(shape, 7, channels=[8, 16, 16], kernel_size=[3, 5, 3], convs_per_block=2)
    assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_cnn_options_change_the_architecture() -> None:
    plain = ParametricCNN((1, 8, 8), 10, channels=[8], batch_norm=False, pooling="none", dropout=0.0)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)) for m in plain.modules())
    rich = ParametricCNN((1, 8, 8), 10, channels=[8, 8], batch_norm=True, pooling="avg", dropout=0.5,
                         convs_per_block=3)
    assert sum(isinstance(m, nn.Conv2d) for m in rich.modules()) == 6
    assert sum(isinstance(m, nn.BatchNorm2d) for m in rich.modules()) == 6
    assert sum(isinstance(m, nn.AvgPool2d) for m in rich.modules()) == 2
    assert all(m.p == 0.5 for m in rich.modules() if isinstance(m, nn.Dropout))
    assert [m.kernel_size for m in ParametricCNN((1, 8, 8), 2, channels=[4, 4], kernel_size=[5, 3]).modules()
            if isinstance(m, nn.Conv2d)] == [(5, 5), (3, 3)]


def test_global_pools_are_deterministic_means() -> None:
    """AdaptiveAvgPool2d has no deterministic CUDA backward (deterministic: true would stop a GPU run)."""
    x = torch.randn(2, 5, 7, 6)
    torch.testing.assert_close(GlobalAvgPool()(x), nn.AdaptiveAvgPool2d(1)(x).flatten(1))
    for net in (ParametricCNN((3, 32, 32), 10, head="gap"), ResNet18((3, 32, 32), 10, weights="none")):
        assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for m in net.modules())
        assert any(isinstance(m, GlobalAvgPool) for m in net.modules())


def _weight_std(layer: nn.Module, scheme: str, activation: str, std: float = 0.01) -> float:
    torch.manual_seed(0)
    init_weights(layer, scheme, activation, std)
    assert torch.count_nonzero(layer.bias) == 0
    return layer.weight.std().item()


@pytest.mark.parametrize("layer", [nn.Linear(1024, 512), nn.Conv2d(64, 128, 3)], ids=["linear", "conv"])
def test_init_statistics_match_the_scheme(layer: nn.Module) -> None:
    fan_in = layer.weight[0].numel()
    fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
    assert _weight_std(layer, "kaiming", "relu") == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert _weight_std(layer, "kaiming", "tanh") == pytest.approx((5 / 3) / math.sqrt(fan_in), rel=0.02)
    assert _weight_std(layer, "xavier", "relu") == pytest.approx(
        math.sqrt(2) * math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    assert _weight_std(layer, "xavier", "tanh") == pytest.approx(
        (5 / 3) * math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    assert _weight_std(layer, "random", "relu", std=0.05) == pytest.approx(0.05, rel=0.02)


@pytest.mark.parametrize("kwargs,needle", [
    ({"activation": "sigmoid"}, "relu, tanh, leaky_relu"),
    ({"init": "orthogonal"}, "xavier, kaiming, random"),
    ({"pooling": "lp"}, "max, avg, none"),
    ({"kernel_size": 4}, "odd"),
    ({"dropout": 1.5}, "dropout"),
])
def test_bad_cnn_settings_are_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Classifier(cnn(**kwargs), num_classes=10, input_shape=(1, 8, 8))


def test_cnn_refuses_flat_input() -> None:
    with pytest.raises(ConfigError, match="channels, height, width"):
        Classifier(ParametricCNN, num_classes=2, input_shape=(2,))


def test_bad_optimizer_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="Invalid learning rate"):
        Classifier(MLP, num_classes=2, input_shape=(2,), optimizer=functools.partial(torch.optim.SGD, lr=-0.1))


# -- ResNet-18 ------------------------------------------------------------------------------------------------
def test_resnet18_without_weights_replaces_fc() -> None:
    model = Classifier(functools.partial(ResNet18, weights="none"), num_classes=5, input_shape=(3, 32, 32))
    assert model.net.fc.out_features == 5
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert all(p.requires_grad for p in model.parameters())
    groups = model.configure_optimizers().param_groups
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert sum(p.numel() for p in groups[0]["params"]) == 512 * 5 + 5
    with pytest.raises(ConfigError, match="3-channel"):
        ResNet18((1, 28, 28), 10, weights="none")


def test_resnet18_loads_a_local_state_dict_and_freezes_the_backbone(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(1)
    source = resnet18(weights=None)  # stands in for ImageNet weights: 1000-class fc, real key names
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = Classifier(functools.partial(ResNet18, weights=str(path), freeze_backbone=True), num_classes=2,
                       input_shape=(3, 64, 64))
    assert torch.equal(model.net.conv1.weight, source.conv1.weight)
    assert torch.equal(model.net.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.net.fc.out_features == 2
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}
    optimizer = model.configure_optimizers()
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == 512 * 2 + 2
    # The lab's own ResNet18 weights (best_weights.pt: the net's state dict) load back the same way.
    torch.save(model.net.state_dict(), tmp_path / "best_weights.pt")
    again = ResNet18((3, 64, 64), 2, weights=str(tmp_path / "best_weights.pt"))
    assert torch.equal(again.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_resnet18_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(ParametricCNN((3, 32, 32), 10).state_dict(), path)
    with pytest.raises(WeightsError, match="not a ResNet-18 state dict"):
        ResNet18((3, 32, 32), 2, weights=str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        ResNet18((3, 32, 32), 2, weights=str(tmp_path / "missing.pth"))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        ResNet18((3, 32, 32), 2, weights=str(tmp_path / "text.pth"))


def test_resnet18_offline_error_names_the_cache_and_the_alternatives(tmp_path: Path, monkeypatch,
                                                                    no_network: None) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache: torchvision downloads
    with pytest.raises(WeightsError) as err:
        ResNet18((3, 224, 224), 2, weights="IMAGENET1K_V1")
    message = str(err.value)
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--model.net.init_args.weights none" in message and "PATH" in message


def test_staged_finetuning_holds_the_backbone_then_trains_it_at_a_lower_rate(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Classifier(functools.partial(ResNet18, weights="none", freeze_backbone=True), num_classes=2,
                       input_shape=(3, 32, 32), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    snapshots = []

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Classifier) -> None:
            snapshots.append((pl_module.net.conv1.weight.detach().clone(), pl_module.net.fc.weight.detach().clone(),
                              [g["lr"] for g in trainer.optimizers[0].param_groups]))

    conv1, fc = model.net.conv1.weight.detach().clone(), model.net.fc.weight.detach().clone()
    fit = trainer(tmp_path, max_epochs=2, callbacks=[StagedFinetuning(unfreeze_at_epoch=1), Snapshot()])
    fit.fit(model, train_dataloaders=images(8, (3, 32, 32), classes=2))
    (conv1_0, fc_0, lrs_0), (conv1_1, _, lrs_1) = snapshots
    assert torch.equal(conv1_0, conv1) and not torch.equal(fc_0, fc)  # epoch 0: the head alone
    assert not torch.equal(conv1_1, conv1_0)  # epoch 1: the backbone too
    assert lrs_0 == [0.1, 0.1] and lrs_1 == pytest.approx([0.1, 0.01])  # head, backbone


@pytest.mark.slow
def test_staged_finetuning_keeps_ddp_ranks_identical(tmp_path: Path) -> None:
    """2 CPU processes (gloo), one launch: the backbone, still in epoch 0, trains in epoch 1 and ends identical on
    both ranks; then a BaseFinetuning that freezes before DDP wraps the model (Lightning issue 20340) is refused
    on each rank."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "tests" / "ddp_finetuning_script.py")
    run = subprocess.run([sys.executable, script, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1
    assert rank0["epoch0"]["backbone"] == rank0["start"]["backbone"]
    assert rank0["epoch0"]["head"] != rank0["start"]["head"]
    assert rank0["epoch1"]["backbone"] != rank0["epoch0"]["backbone"]
    for rank in (0, 1):
        refusal = (tmp_path / f"refused{rank}.txt").read_text()
        assert "StagedFinetuning" in refusal and "20340" in refusal


# -- precision, prediction, checkpoints -------------------------------------------------------------------------
# Lightning precision -> (dtype of the weights, dtype the convolutions compute in).
CPU_PRECISIONS = {
    "32-true": (torch.float32, torch.float32),
    "64-true": (torch.float64, torch.float64),
    "bf16-mixed": (torch.float32, torch.bfloat16),
    "bf16-true": (torch.bfloat16, torch.bfloat16),
    "16-true": (torch.float16, torch.float16),
}


@pytest.mark.parametrize("precision", list(CPU_PRECISIONS))
def test_every_cpu_precision_trains_tests_and_predicts(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    # SGD: in 16-true, Adam's default eps (1e-8) is 0 in float16, and its first step divides 0 by 0.
    model = Classifier(cnn(channels=[4], hidden=[]), num_classes=3, input_shape=(1, 8, 8),
                       optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ran = conv_dtypes(model.net)
    run = trainer(tmp_path, precision=precision, max_steps=2, enable_model_summary=True)  # summary: example input
    run.fit(model, train_dataloaders=images(8, classes=3))
    assert run.global_step == 2
    assert ran == {CPU_PRECISIONS[precision]}, "weights and computation in the precision's dtypes"
    unmoved = [name for name, p in model.named_parameters() if torch.equal(p.detach().float(), before[name])]
    assert not unmoved, f"not trained: {unmoved}"
    (result,) = run.test(model, dataloaders=images(8, classes=3), verbose=False)
    assert math.isfinite(result["test/loss"])
    index = torch.arange(8)
    batches = run.predict(model, DataLoader(TensorDataset(torch.randn(8, 1, 8, 8), index), batch_size=4))
    assert batches[0]["probs"].dtype == torch.float32 and batches[0]["probs"].shape == (4, 3)
    torch.testing.assert_close(batches[0]["probs"].sum(1), torch.ones(4), atol=1e-2, rtol=0)
    assert torch.equal(torch.cat([b["index"] for b in batches]), index)


def test_checkpoint_rebuilds_the_model_without_a_config(tmp_path: Path) -> None:
    """LightningCLI stores the parsed arguments (the net as class_path + init_args) in the checkpoint."""
    from lightning.pytorch.cli import LightningCLI

    class Data(L.LightningDataModule):
        num_classes, input_shape = 3, (2,)

        def train_dataloader(self) -> DataLoader:
            return images(8, (2,), classes=3)

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")

    cli = CLI(Classifier, Data, run=False, args=[
        "--model.net", "lightning_lab.models.MLP", "--model.net.hidden", "[7]",
        "--model.scheduler", "torch.optim.lr_scheduler.CosineAnnealingLR", "--trainer.max_epochs", "2",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator", "cpu"])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.lr_scheduler_configs[0].scheduler.T_max == 2  # derived from max_epochs
    path = tmp_path / "model.ckpt"
    cli.trainer.save_checkpoint(path)
    loaded = Classifier.load_from_checkpoint(path)
    assert isinstance(loaded.net, MLP) and loaded.net.layers[1].out_features == 7
    torch.testing.assert_close(loaded.state_dict(), cli.model.state_dict())


# -- speed paths: deferred NaN check, derived T_max, channels_last/compile ------------------------------------------
def test_non_finite_loss_is_caught_later_but_names_the_first_bad_step(tmp_path: Path) -> None:
    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    x[13] = math.nan  # batch 3 of 4-sample batches: step 3
    model = Classifier(MLP, num_classes=2, input_shape=(2,), optimizer=functools.partial(torch.optim.SGD, lr=0.5))
    run = trainer(tmp_path, max_epochs=2, log_every_n_steps=5)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 3 \(epoch 0, batch 3\) with learning "
                                                 r"rate 0\.5; lower the learning rate"):
        run.fit(model, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=4))
    assert run.global_step == 4  # found by the read of the 5th step (a logging step), not by a host read at step 3


def test_recording_a_loss_reads_nothing_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = NonFiniteLossWatch()
    watch.record(torch.tensor(1.0), 0, 0, 0, 0.1)
    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, **k: pytest.fail("host read of a tensor value"))
    for step in range(1, 4):
        watch.record(torch.tensor(math.inf if step == 2 else 1.0), step, 0, step, 0.1)
    monkeypatch.undo()
    with pytest.raises(NonFiniteLossError, match="loss became inf at step 2"):
        watch.check()
    watch.check()  # checked steps are forgotten


@pytest.mark.parametrize("scheduler,expected", [
    (functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR), {"T_max": 3}),
    (functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=10), {"T_max": 10}),
    (functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2), {"step_size": 2}),
    (torch.optim.lr_scheduler.ReduceLROnPlateau, {"mode": "min"}),
])
def test_scheduler_length_follows_max_epochs(tmp_path: Path, scheduler, expected: dict) -> None:
    model = Classifier(MLP, num_classes=2, input_shape=(2,), scheduler=scheduler)
    run = trainer(tmp_path, max_epochs=3, limit_train_batches=1)
    model.trainer = run
    config = model.configure_optimizers()
    assert {k: getattr(config["lr_scheduler"]["scheduler"], k) for k in expected} == expected


def test_config_cannot_type_t_max_and_other_schedulers_parse() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Classifier, "model")
    base = ["--model.net", "lightning_lab.models.MLP"]
    cosine = parser.parse_args([*base, "--model.scheduler", "torch.optim.lr_scheduler.CosineAnnealingLR"])
    assert "T_max" not in cosine.model.scheduler.init_args
    step = parser.parse_args([*base, "--model.scheduler", "torch.optim.lr_scheduler.StepLR",
                              "--model.scheduler.step_size", "4"])
    assert step.model.scheduler.init_args.step_size == 4
    with pytest.raises(Exception, match="T_max"):
        parser.parse_args([*base, "--model.scheduler", "torch.optim.lr_scheduler.CosineAnnealingLR",
                           "--model.scheduler.T_max", "5"])


def test_channels_last_and_compile_auto_are_off_on_cpu_and_compile_keeps_state_dict_keys(tmp_path: Path) -> None:
    auto = Classifier(cnn(), num_classes=10, input_shape=(3, 8, 8))
    trainer(tmp_path, max_steps=1).fit(auto, train_dataloaders=images(shape=(3, 8, 8)))
    assert not auto.uses_channels_last and not auto.net.features[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    forced = Classifier(cnn(), num_classes=10, input_shape=(3, 8, 8), channels_last=True, compile=True)
    keys = list(forced.state_dict())
    compiling = compiling_calls(forced.net)
    forced.trainer = trainer(tmp_path)
    forced.configure_model()  # compiles lazily: nothing runs until the first forward
    assert forced.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    # Dynamo traces the forward as in a real run; the eager backend spares the seconds of code generation.
    with torch.compiler.set_stance(force_backend="eager"):
        forced(torch.zeros(2, 3, 8, 8))
    assert compiling == [True]  # the network ran through torch.compile
    compiled_keys = list(forced.state_dict())
    assert compiled_keys == keys and not any("_orig_mod" in k for k in compiled_keys)


@pytest.mark.slow
def test_figures_leave_the_users_matplotlib_backend_alone(tmp_path: Path) -> None:
    """Importing the lab and drawing its figures must not switch matplotlib's backend (no matplotlib.use)."""
    code = ("import sys, matplotlib, torch; from lightning_lab.models.figures import confusion_matrix_figure as f; "
            "f(torch.eye(3, dtype=torch.long), ['a', 'b', 'c']).savefig(sys.argv[1]); print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.png")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg" and (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow  # the shared digits run trains 2 epochs
def test_a_trained_checkpoint_and_its_best_weights_rebuild_the_same_network(digits_run, tmp_path: Path) -> None:
    """The shared digits run (here a copy of it): its checkpoint rebuilds the Classifier without a config, and
    best_weights.pt (the net's plain state dict) loads into the bare network, which predicts as the checkpoint."""
    run = digits_run.copy_to(tmp_path)
    assert run.best.parent == tmp_path / "checkpoints" / "digits_cnn" / "version_0" and run.last.is_file()
    model = Classifier.load_from_checkpoint(run.best, map_location="cpu").eval()
    assert isinstance(model.net, ParametricCNN) and model.num_classes == 10
    assert run.test_acc > 0.5  # ten classes: chance is 0.1
    bare = ParametricCNN(model.input_shape, model.num_classes, **model.hparams["net"].keywords).eval()
    bare.load_state_dict(torch.load(run.best_weights, map_location="cpu"))
    x = torch.randn(16, *model.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(bare(x), model(x))


def test_best_weights_are_written_for_a_model_built_in_python(tmp_path: Path) -> None:
    """Outside the CLI the hyperparameters hold the network class itself; best_weights.pt must still be written."""
    from lightning_lab.callbacks import LabCheckpoint

    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    model = Classifier(MLP, num_classes=2, input_shape=(2,))
    checkpoint = LabCheckpoint(dirpath=tmp_path / "ckpt", monitor="train/loss", mode="min")
    trainer(tmp_path, callbacks=[checkpoint], enable_checkpointing=True).fit(
        model, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=4))
    weights = torch.load(tmp_path / "ckpt" / "best_weights.pt", weights_only=True)
    torch.testing.assert_close(weights, model.net.state_dict())


# -- batches with no sample ------------------------------------------------------------------------------------------
class EveryFourthToEighthUnreadable(torch.utils.data.Dataset):
    """12 images whose samples 4-7 fail to load: with batches of 4, the second batch loses all of them."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(12, 1, 8, 8, generator=generator), torch.arange(12) % 2

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if 4 <= i < 8:
            raise OSError("image file is truncated")
        return self.x[i], self.y[i]


def skipping_loader(images: EveryFourthToEighthUnreadable) -> tuple[DataLoader, TensorDataset]:
    """Batches of 4 that leave out the unreadable samples (as Cats-vs-Dogs' loader does), and the readable 0-3
    and 8-11 as a dataset of their own: what the run must equal."""
    from lightning_lab.data.cats_dogs import SkipUnreadable, collate_skipping

    loader = DataLoader(SkipUnreadable(images), batch_size=4,
                        collate_fn=functools.partial(collate_skipping, shape=(1, 8, 8)))
    kept = TensorDataset(torch.cat([images.x[:4], images.x[8:]]), torch.cat([images.y[:4], images.y[8:]]))
    return loader, kept


def two_equal_models(net: Callable[..., nn.Module]) -> list[Classifier]:
    models = [Classifier(net, num_classes=2, input_shape=(1, 8, 8),
                         optimizer=functools.partial(torch.optim.Adam, lr=0.01)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    return models


@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")
def test_a_batch_whose_files_are_all_unreadable_changes_nothing_in_any_stage(tmp_path: Path) -> None:
    loader, kept = skipping_loader(EveryFourthToEighthUnreadable())
    assert [len(y) for _, y in loader] == [4, 0, 4]
    models = two_equal_models(cnn(batch_norm=True))
    runs = [trainer(tmp_path, log_every_n_steps=1, limit_val_batches=None) for _ in range(2)]
    runs[0].fit(models[0], train_dataloaders=loader, val_dataloaders=loader)  # no NonFiniteLossError
    runs[1].fit(models[1], train_dataloaders=DataLoader(kept, batch_size=4), val_dataloaders=DataLoader(kept))
    # the empty batch moved no weight and no BatchNorm statistic
    torch.testing.assert_close(models[0].state_dict(), models[1].state_dict())
    for name in ("val/acc", "val/loss"):
        torch.testing.assert_close(runs[0].callback_metrics[name], runs[1].callback_metrics[name])
    (with_empty,) = runs[0].test(models[0], dataloaders=loader, verbose=False)
    (without,) = runs[1].test(models[1], dataloaders=DataLoader(kept, batch_size=4), verbose=False)
    assert with_empty == pytest.approx(without)


class FourToSevenButOneUnreadable(EveryFourthToEighthUnreadable):
    """Samples 4-6 fail to load: with batches of 4, the second batch keeps sample 7 alone."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return super().__getitem__(i) if i != 7 else (self.x[i], self.y[i])


def dense_batch_norm_net(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """BatchNorm1d over features: one value per channel for a batch of one, which BatchNorm cannot train on."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 8), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Linear(8, num_classes))


def test_a_batch_left_with_one_sample_is_skipped_under_batch_norm_with_a_warning(tmp_path: Path) -> None:
    loader, kept = skipping_loader(FourToSevenButOneUnreadable())
    assert [len(y) for _, y in loader] == [4, 1, 4]
    models = two_equal_models(dense_batch_norm_net)
    with pytest.warns(UserWarning, match=r"skipped a training batch of one sample \(epoch 0, batch 1\): BatchNorm"):
        trainer(tmp_path, max_epochs=2).fit(models[0], train_dataloaders=loader)  # no ValueError mid-epoch
    trainer(tmp_path, max_epochs=2).fit(models[1], train_dataloaders=DataLoader(kept, batch_size=4))
    # the lone sample moved no weight and no BatchNorm statistic
    torch.testing.assert_close(models[0].state_dict(), models[1].state_dict())


def test_a_batch_of_one_sample_trains_when_no_batch_norm_trains(tmp_path: Path) -> None:
    x, y = torch.randn(5, 2), torch.randint(0, 2, (5,))
    run = trainer(tmp_path)
    model = Classifier(MLP, num_classes=2, input_shape=(2,))
    run.fit(model, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=4))
    assert run.global_step == 2  # the batch of one took its optimizer step


def test_under_ddp_an_empty_batch_joins_the_gradient_all_reduce_with_zero_gradients() -> None:
    """Lightning does not support skipping a step (None) under DDP: the other ranks would wait in the all-reduce
    for this one's gradients, so every trainable parameter gets a zero gradient instead."""
    from types import SimpleNamespace

    model = Classifier(cnn(batch_norm=True), num_classes=2, input_shape=(1, 8, 8))
    model.trainer = SimpleNamespace(world_size=2)
    loss = model.training_step((torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)), 0)
    assert loss is not None and loss.item() == 0.0
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and not p.grad.any() for p in trainable)


def test_reduce_on_plateau_steps_in_the_epochs_that_validate(tmp_path: Path) -> None:
    """It watches val/loss: with validation every second epoch it steps then, not in the epochs without it."""
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = Classifier(MLP, num_classes=2, input_shape=(2,), scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau)
    run = trainer(tmp_path, max_epochs=4, check_val_every_n_epoch=2, limit_val_batches=None)
    run.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert run.lr_scheduler_configs[0].scheduler.last_epoch == 2


def test_a_frozen_backbone_keeps_its_batch_norm_in_eval_mode_under_sync_batchnorm() -> None:
    """Lightning's `sync_batchnorm` replaces every BatchNorm2d by SyncBatchNorm, which must stay frozen too."""
    net = nn.SyncBatchNorm.convert_sync_batchnorm(ResNet18((3, 32, 32), 2, weights="none", freeze_backbone=True))
    synced = [m for m in net.backbone.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert synced and not any(m.training for m in net.train().backbone.modules() if isinstance(m, nn.SyncBatchNorm))


def test_a_frozen_backbone_keeps_its_batch_norm_statistics() -> None:
    x = torch.randn(4, 3, 32, 32)
    for frozen in (True, False):
        net = ResNet18((3, 32, 32), 2, weights="none", freeze_backbone=frozen).train()
        before = net.bn1.running_mean.clone()
        net(x).sum().backward()
        assert torch.equal(net.bn1.running_mean, before) == frozen
        assert net.fc.training and net.fc.weight.grad is not None  # the head trains either way


@pytest.mark.parametrize("scheduler", [functools.partial(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, T_0=1),
                                       functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)])
def test_staged_finetuning_keeps_the_backbone_at_its_ratio_under_a_scheduler(tmp_path: Path, scheduler) -> None:
    """A scheduler that recomputes rates from its starting ones must not put the backbone back at the head's rate."""
    torch.manual_seed(0)
    model = Classifier(functools.partial(ResNet18, weights="none"), num_classes=2, input_shape=(3, 32, 32),
                       optimizer=functools.partial(torch.optim.SGD, lr=0.1), scheduler=scheduler)
    ratios = []

    class Ratio(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Classifier) -> None:
            head, backbone = (g["lr"] for g in trainer.optimizers[0].param_groups)
            ratios.append(backbone / head)

    fit = trainer(tmp_path, max_epochs=4, callbacks=[StagedFinetuning(unfreeze_at_epoch=1), Ratio()])
    fit.fit(model, train_dataloaders=images(4, (3, 32, 32), classes=2))
    assert ratios == pytest.approx([1.0, 0.1, 0.1, 0.1])
