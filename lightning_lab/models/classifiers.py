"""The LightningModules users pick in a config: each builds its network and inherits the training logic."""
from __future__ import annotations

from typing import Sequence

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lightning_lab.errors import ConfigError
from lightning_lab.models.classifier import ClassifierModule, default_optimizer
from lightning_lab.models.cnn import ParametricCNN, Pooling
from lightning_lab.models.layers import Activation, Init
from lightning_lab.models.mlp import MLPNet, flat_features
from lightning_lab.models.resnet import ResNet18Weights, build_resnet18


class CNNClassifier(ClassifierModule):
    """The parametric CNN (see `ParametricCNN`) trained as a classifier."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64),
        kernel_size: int | Sequence[int] = 3,
        convs_per_block: int = 1,
        pooling: Pooling = "max",
        batch_norm: bool = True,
        dropout: float = 0.0,
        activation: Activation = "relu",
        init: Init = "kaiming",
        init_std: float = 0.01,
        hidden: Sequence[int] = (128,),
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(num_classes, input_shape, optimizer, scheduler, channels_last, compile)
        if len(input_shape) != 3:
            raise ConfigError(f"the CNN needs image input (channels, height, width), got input_shape {input_shape}")
        self.net = ParametricCNN(input_shape[0], num_classes, channels, kernel_size, convs_per_block, pooling,
                                 batch_norm, dropout, activation, init, init_std, hidden)


class MLPClassifier(ClassifierModule):
    """A fully connected network on flattened input (moons, digits, MNIST)."""

    def __init__(
        self,
        num_classes: int = 2,
        input_shape: Sequence[int] = (2,),
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        dropout: float = 0.0,
        init: Init = "kaiming",
        init_std: float = 0.01,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(num_classes, input_shape, optimizer, scheduler, channels_last=False, compile=compile)
        self.net = MLPNet(flat_features(input_shape), num_classes, hidden, activation, dropout, init, init_std)


class ResNet18Classifier(ClassifierModule):
    """torchvision's ResNet-18, pretrained on ImageNet by default, with a new `fc` for the dataset's classes.

    weights: "IMAGENET1K_V1" (downloaded by torchvision into $TORCH_HOME), "none", or a path to a local
    state-dict file. freeze_backbone trains the head only; to unfreeze later add Lightning's
    `BackboneFinetuning` callback, which uses `self.backbone`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        input_shape: Sequence[int] = (3, 224, 224),
        weights: ResNet18Weights = "IMAGENET1K_V1",
        freeze_backbone: bool = False,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(num_classes, input_shape, optimizer, scheduler, channels_last, compile)
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise ConfigError(f"ResNet-18 needs 3-channel images, got input_shape {tuple(input_shape)}")
        self.net = build_resnet18(num_classes, weights)
        if freeze_backbone:
            for module in self.backbone:
                module.requires_grad_(False)

    @property
    def backbone(self) -> nn.ModuleList:
        """Every child of the ResNet except the new `fc` head (a view: the modules are the network's own)."""
        net = getattr(self.net, "_orig_mod", self.net)  # unwrap torch.compile
        return nn.ModuleList(module for name, module in net.named_children() if name != "fc")
