"""The textbook CNNs every course shows, in plain PyTorch, and a plain training loop for them.

`KerasMnistCNN` is Keras' classic `mnist_cnn` example, `KerasCifar10CNN` its `cifar10_cnn` (PyTorch's default
weight init; optimizer as in each example). The loop reads the same data module, split, batch size and
augmentation as the lab's run, keeps the weights of the epoch the config's checkpoint would keep (best val/acc,
lowest val/loss, or the last epoch: `BestEpoch`) and reports them on the test split.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_lab.errors import ConfigError


def flat_size(features: nn.Module, input_shape: Sequence[int]) -> int:
    """Number of values `features` makes of one input of `input_shape` (checked on a zero tensor)."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class KerasMnistCNN(nn.Module):
    """conv32-conv64 (3x3, valid, ReLU) - maxpool 2 - dropout 0.25 - flatten - fc128 - dropout 0.5 - fc."""

    name = "keras mnist_cnn"

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(flat_size(self.features, input_shape), 128), nn.ReLU(),
                                  nn.Dropout(0.5), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @staticmethod
    def optimizer(params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=1e-3)


class KerasCifar10CNN(nn.Module):
    """conv32 (same) - conv32 (valid) - pool - drop 0.25 - conv64 (same) - conv64 (valid) - pool - drop 0.25 -
    flatten - fc512 - drop 0.5 - fc; ReLU throughout."""

    name = "keras cifar10_cnn"

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(flat_size(self.features, input_shape), 512), nn.ReLU(),
                                  nn.Dropout(0.5), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @staticmethod
    def optimizer(params: Any) -> torch.optim.Optimizer:
        # The example's RMSprop(lr=1e-4) with Keras' rho and epsilon (its tiny per-step decay left out).
        return torch.optim.RMSprop(params, lr=1e-4, alpha=0.9, eps=1e-7)


def textbook_cnn(input_shape: Sequence[int], num_classes: int, seed: int) -> KerasMnistCNN | KerasCifar10CNN:
    """The textbook network for the data: `mnist_cnn` for 1-channel images, `cifar10_cnn` for colour. Its initial
    weights come from `seed` alone, whatever drew random numbers before (the lab's network is built first)."""
    cls = KerasMnistCNN if input_shape[0] == 1 else KerasCifar10CNN
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(input_shape, num_classes)


@dataclass
class NetworkResult:
    test_acc: float
    test_loss: float
    params: int
    train_seconds: float


def network_batches(data: Any, loader: Any, device: torch.device, training: bool
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) on `device` as the network sees them: the data module's own device-side transform of each batch
    (normalised, resized, augmented only when `training` and the module augments)."""
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        yield data.transform_batch(x, training), y


def evaluate(net: nn.Module, data: Any, loader: Any, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `net` over every sample of `loader`."""
    net.eval()
    correct, loss_sum, count = 0, 0.0, 0
    with torch.no_grad():
        for x, y in network_batches(data, loader, device, training=False):
            logits = net(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    return correct / count, loss_sum / count


class BestEpoch:
    """Which epoch's weights to keep, chosen as the lab's checkpoint chooses: `monitor` "val/acc" (the highest,
    the first of a tie), "val/loss" (the lowest, the first of a tie) or None (the last epoch)."""

    MODES = {"val/acc": "max", "val/loss": "min", None: None}

    def __init__(self, monitor: str | None = "val/acc", mode: str | None = None) -> None:
        if monitor not in self.MODES or mode not in (None, self.MODES[monitor]):
            raise ConfigError(f"baselines keeps the textbook CNN's epoch the way the config keeps its checkpoint: "
                              f"val/acc (mode max), val/loss (mode min) or the last epoch (checkpoint.monitor "
                              f"null); got checkpoint.monitor {monitor!r}, mode {mode!r}")
        self.monitor = monitor
        self.best: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, val_acc: float, val_loss: float, net: nn.Module) -> bool:
        """Keep a copy of `net`'s weights if this epoch is the best so far; whether it is."""
        score = {"val/acc": -val_acc, "val/loss": val_loss, None: 0.0}[self.monitor]  # lower is better
        if self.best is not None and self.monitor is not None and score >= self.best:
            return False
        self.best, self.state = score, copy.deepcopy(net.state_dict())
        return True


def train_textbook(net: nn.Module, data: Any, epochs: int, seed: int, device: torch.device | None = None,
                   monitor: str | None = "val/acc") -> NetworkResult:
    """Train `net` (a set-up data module's train split, its batch size and augmentation) for `epochs`; test the
    weights of the epoch `monitor` chooses (see `BestEpoch`)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    keep = BestEpoch(monitor)
    torch.manual_seed(seed)  # the loaders shuffle with torch's global generator
    net.to(device)
    optimizer = net.optimizer(net.parameters())
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for x, y in network_batches(data, data.train_dataloader(), device, training=True):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
        keep.update(*evaluate(net, data, data.val_dataloader(), device), net)
    seconds = time.perf_counter() - start
    if keep.state is not None:
        net.load_state_dict(keep.state)
    test_acc, test_loss = evaluate(net, data, data.test_dataloader(), device)
    return NetworkResult(test_acc, test_loss, sum(p.numel() for p in net.parameters()), seconds)
