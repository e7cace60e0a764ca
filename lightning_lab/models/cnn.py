"""The parametric CNN: conv blocks, pooling, batch norm, dropout, activation and init all chosen by arguments."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from lightning_lab.errors import ConfigError
from lightning_lab.models.layers import Activation, GlobalAvgPool, Init, check_choice, init_weights, make_activation

Pooling = Literal["max", "avg", "none"]
POOLINGS = ("max", "avg", "none")
Head = Literal["flatten", "gap"]
HEADS = ("flatten", "gap")


class ParametricCNN(nn.Module):
    """conv blocks -> flatten (or global average pool) -> fully connected head.

    Each block is `convs_per_block` x (conv -> [batch norm] -> activation), then a 2x2 pool.
    `head`: `flatten` keeps where features are (for a fixed input size, as every lab data module gives: the
    better choice for a small CNN); `gap` averages each feature map to one number (for inputs of varying size,
    or deep nets whose last maps are small); both build on 8x8, 28x28, 32x32 and 128/224 inputs.
    `input_shape` is (channels, height, width); the Classifier passes it and `num_classes` from the data.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
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
        head: Head = "flatten",
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"the CNN needs image input (channels, height, width), got input_shape "
                              f"{tuple(input_shape)}")
        check_choice("pooling", pooling, POOLINGS)
        check_choice("head", head, HEADS)
        kernel_sizes = [kernel_size] * len(channels) if isinstance(kernel_size, int) else list(kernel_size)
        if not channels:
            raise ConfigError("channels must name at least one conv block, e.g. [32, 64]")
        if len(kernel_sizes) != len(channels):
            raise ConfigError(f"kernel_size has {len(kernel_sizes)} entries but there are {len(channels)} blocks")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ConfigError(f"kernel sizes must be odd and positive (to keep 'same' padding), got {kernel_sizes}")
        if convs_per_block < 1:
            raise ConfigError(f"convs_per_block must be at least 1, got {convs_per_block}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")

        blocks: list[nn.Module] = []
        prev = input_shape[0]
        height, width = input_shape[1], input_shape[2]
        for out, k in zip(channels, kernel_sizes):
            for _ in range(convs_per_block):
                blocks.append(nn.Conv2d(prev, out, k, padding=k // 2, bias=not batch_norm))
                if batch_norm:
                    blocks.append(nn.BatchNorm2d(out))
                blocks.append(make_activation(activation))
                prev = out
            if pooling == "max":
                blocks.append(nn.MaxPool2d(2, ceil_mode=True))
            elif pooling == "avg":
                blocks.append(nn.AvgPool2d(2, ceil_mode=True))
            if pooling != "none":
                height, width = -(-height // 2), -(-width // 2)  # ceil_mode pools keep the odd edge
        self.features = nn.Sequential(*blocks)
        self.pool: nn.Module = GlobalAvgPool() if head == "gap" else nn.Flatten()
        if head == "flatten":
            prev *= height * width

        head: list[nn.Module] = []
        for width in hidden:
            head += [nn.Dropout(dropout), nn.Linear(prev, width), make_activation(activation)]
            prev = width
        head += [nn.Dropout(dropout), nn.Linear(prev, num_classes)]
        self.head = nn.Sequential(*head)
        init_weights(self, init, activation, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))
