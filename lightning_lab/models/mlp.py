"""A multi-layer perceptron in torch: the numpy_core MLP's twin, so moons and digits run through the same CLI."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lightning_lab.errors import ConfigError
from lightning_lab.models.layers import Activation, Init, init_weights, make_activation


class MLP(nn.Module):
    """Flatten -> (Linear -> activation -> dropout) per hidden layer -> Linear to class scores.

    `input_shape` (any shape: (2,) for moons, (1, 8, 8) for digits) is flattened; the Classifier passes it and
    `num_classes` from the data.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        dropout: float = 0.0,
        init: Init = "kaiming",
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = int(math.prod(input_shape))
        for width in hidden:
            layers += [nn.Linear(prev, width), make_activation(activation), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self, init, activation, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
