"""The networks and LightningModules: every choice builds and trains a step, inits match their schemes,
ResNet-18 loads weights as asked, bad names are refused with the valid ones listed."""
from __future__ import annotations

import functools
import itertools
import math
from urllib.error import URLError

import pytest
import torch
from torch import nn

from lightning_lab.errors import ConfigError, WeightsError
from lightning_lab.models import CNNClassifier, MLPClassifier, ParametricCNN, ResNet18Classifier
from lightning_lab.models.layers import init_weights

ACTIVATIONS = ["relu", "tanh", "leaky_relu"]
INITS = ["xavier", "kaiming", "random"]
OPTIMIZERS = {
    "sgd": functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
    "adam": functools.partial(torch.optim.Adam, lr=1e-3),
    "rmsprop": functools.partial(torch.optim.RMSprop, lr=1e-3),
}


def _train_step(model: CNNClassifier | MLPClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    optimizer = model.configure_optimizers()
    loss = model._step(batch)[0]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("activation,init,optimizer", list(itertools.product(ACTIVATIONS, INITS, OPTIMIZERS)))
def test_every_activation_init_optimizer_builds_and_steps(activation: str, init: str, optimizer: str) -> None:
    torch.manual_seed(0)
    model = CNNClassifier(num_classes=10, input_shape=(1, 8, 8), channels=[8, 16], hidden=[16],
                          activation=activation, init=init, optimizer=OPTIMIZERS[optimizer])
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    before = [p.detach().clone() for p in model.parameters()]
    loss = _train_step(model, batch)
    assert math.isfinite(loss)
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(changed), "every parameter should move after one optimizer step"
    activation_type = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}[activation]
    assert any(isinstance(m, activation_type) for m in model.net.modules())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 128, 128), (1, 8, 8)])
def test_cnn_handles_input_sizes(shape: tuple[int, int, int]) -> None:
    net = ParametricCNN(shape[0], 7, channels=[8, 16, 16], kernel_size=[3, 5, 3], convs_per_block=2)
    assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_cnn_options_change_the_architecture() -> None:
    plain = ParametricCNN(1, 10, channels=[8], batch_norm=False, pooling="none", dropout=0.0)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)) for m in plain.modules())
    rich = ParametricCNN(1, 10, channels=[8, 8], batch_norm=True, pooling="avg", dropout=0.5, convs_per_block=3)
    assert sum(isinstance(m, nn.Conv2d) for m in rich.modules()) == 6
    assert sum(isinstance(m, nn.BatchNorm2d) for m in rich.modules()) == 6
    assert sum(isinstance(m, nn.AvgPool2d) for m in rich.modules()) == 2
    assert all(m.p == 0.5 for m in rich.modules() if isinstance(m, nn.Dropout))
    assert [m.kernel_size for m in ParametricCNN(1, 2, channels=[4, 4], kernel_size=[5, 3]).modules()
            if isinstance(m, nn.Conv2d)] == [(5, 5), (3, 3)]


def _weight_std(layer: nn.Module, scheme: str, activation: str, std: float = 0.01) -> float:
    torch.manual_seed(0)
    init_weights(layer, scheme, activation, std)
    assert torch.count_nonzero(layer.bias) == 0
    return layer.weight.std().item()


@pytest.mark.parametrize("layer", [nn.Linear(1024, 512), nn.Conv2d(64, 128, 3)], ids=["linear", "conv"])
def test_init_statistics_match_the_scheme(layer: nn.Module) -> None:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
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
        CNNClassifier(num_classes=10, input_shape=(1, 8, 8), **kwargs)


def test_bad_optimizer_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="Invalid learning rate"):
        MLPClassifier(optimizer=functools.partial(torch.optim.SGD, lr=-0.1))


def test_resnet18_without_weights_replaces_fc() -> None:
    model = ResNet18Classifier(num_classes=5, input_shape=(3, 32, 32), weights="none")
    assert model.net.fc.out_features == 5
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert all(p.requires_grad for p in model.parameters())


def test_resnet18_loads_a_local_state_dict_and_freezes_the_backbone(tmp_path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(1)
    source = resnet18(weights=None)  # stands in for ImageNet weights: 1000-class fc, real key names
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = ResNet18Classifier(num_classes=2, weights=str(path), freeze_backbone=True)
    assert torch.equal(model.net.conv1.weight, source.conv1.weight)
    assert torch.equal(model.net.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.net.fc.out_features == 2
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}
    optimizer = model.configure_optimizers()
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == 512 * 2 + 2


def test_resnet18_refuses_weights_of_another_architecture(tmp_path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(ParametricCNN(3, 10).state_dict(), path)
    with pytest.raises(WeightsError, match="not a ResNet-18 state dict"):
        ResNet18Classifier(weights=str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        ResNet18Classifier(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        ResNet18Classifier(weights=str(tmp_path / "text.pth"))


def test_resnet18_offline_error_names_the_cache_and_the_alternatives(tmp_path, monkeypatch) -> None:
    import torchvision.models._api as weights_api

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        ResNet18Classifier(weights="IMAGENET1K_V1")
    message = str(err.value)
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "weights none" in message and "PATH" in message


def test_backbone_finetuning_unfreezes_the_frozen_resnet_later(tmp_path) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import BackboneFinetuning
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = ResNet18Classifier(num_classes=2, input_shape=(3, 32, 32), weights="none", freeze_backbone=True)
    data = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 2, (8,))), batch_size=4)
    conv1_before = model.net.conv1.weight.detach().clone()
    trainer = L.Trainer(max_epochs=2, callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=1)],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=data)
    assert all(p.requires_grad for p in model.parameters())
    assert len(trainer.optimizers[0].param_groups) == 2  # the head's group, then the backbone's
    assert not torch.equal(conv1_before, model.net.conv1.weight)  # trained after the unfreeze
