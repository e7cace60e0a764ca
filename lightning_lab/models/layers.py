"""Pieces the networks share: activations and weight-init schemes by name, and a deterministic global pool."""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from lightning_lab.errors import ConfigError

Activation = Literal["relu", "tanh", "leaky_relu"]
Init = Literal["xavier", "kaiming", "random"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
INITS = ("xavier", "kaiming", "random")
LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default; kaiming's gain must use the same slope
# The batch-norm layers torch has; Lightning's `sync_batchnorm` replaces the others in a network by SyncBatchNorm.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def check_choice(kind: str, value: str, valid: tuple[str, ...] | list[str]) -> str:
    """Return `value` if valid, else raise ConfigError listing the valid names."""
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


def make_activation(name: str) -> nn.Module:
    check_choice("activation", name, tuple(ACTIVATIONS))
    return nn.LeakyReLU(LEAKY_SLOPE) if name == "leaky_relu" else ACTIVATIONS[name]()


def init_weights(module: nn.Module, scheme: str, activation: str, std: float = 0.01) -> None:
    """Initialise every Conv/Linear weight of `module` by `scheme`; biases to zero.

    xavier: normal with std = gain * sqrt(2 / (fan_in + fan_out)), gain chosen for `activation`.
    kaiming: normal with std = gain / sqrt(fan_in) (sqrt(2 / fan_in) for relu).
    random: normal with the given `std` (the naive scheme, to show why the others exist).
    """
    check_choice("init", scheme, INITS)
    check_choice("activation", activation, tuple(ACTIVATIONS))
    if std <= 0 or not math.isfinite(std):
        raise ConfigError(f"init_std must be a positive number, got {std}")
    for layer in module.modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        if scheme == "xavier":
            nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain(activation, LEAKY_SLOPE))
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(layer.weight, a=LEAKY_SLOPE if activation == "leaky_relu" else 0,
                                    mode="fan_in", nonlinearity=activation)
        else:
            nn.init.normal_(layer.weight, mean=0.0, std=std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C): the mean over height and width.

    Used instead of `nn.AdaptiveAvgPool2d(1)`, whose CUDA backward has no deterministic implementation: with
    `trainer.deterministic: true` PyTorch stops at the first backward on a GPU (pytorch issue 108341).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))
