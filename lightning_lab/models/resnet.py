"""ResNet-18 from torchvision with ImageNet, no, or local weights, and a new head."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from lightning_lab.errors import WeightsError

ResNet18Weights = str  # "IMAGENET1K_V1" | "DEFAULT" | "none" | a path to a state-dict file
IMAGENET_NAMES = tuple(ResNet18_Weights.__members__) + ("DEFAULT",)


def torchvision_cache_file(weights: ResNet18_Weights) -> Path:
    """Where torchvision stores (and looks for) the downloaded weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _imagenet_resnet18(name: str) -> ResNet:
    weights = ResNet18_Weights.DEFAULT if name == "DEFAULT" else ResNet18_Weights[name]
    cache = torchvision_cache_file(weights)
    try:
        # torchvision forces 1000 classes when weights are given: load them, then replace fc.
        return resnet18(weights=weights)
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsError(
            f"could not load ResNet-18 {name} weights: {err}. torchvision looks for them in {cache} "
            f"(set TORCH_HOME to change where). Either download them there on a machine with internet "
            f"({weights.url}), or pass a local state-dict file with --model.init_args.weights PATH, "
            f"or train from scratch with --model.init_args.weights none."
        ) from err


def _local_resnet18(path: Path) -> ResNet:
    if not path.is_file():
        raise WeightsError(f"ResNet-18 weights file {path} does not exist; expected a state dict saved with "
                           f"torch.save(model.state_dict(), path) from torchvision.models.resnet18")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise WeightsError(f"{path} is not a readable PyTorch state-dict file: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    model = resnet18(weights=None)
    backbone_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k for k in model.state_dict() if not k.startswith("fc.")}
    missing, unexpected = expected - backbone_state.keys(), backbone_state.keys() - expected
    if missing or unexpected:
        raise WeightsError(
            f"{path} is not a ResNet-18 state dict: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(backbone_state, strict=False)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit ResNet-18: {err}") from err
    return model


def build_resnet18(num_classes: int, weights: ResNet18Weights = "IMAGENET1K_V1") -> ResNet:
    """A torchvision ResNet-18 with the given weights and a fresh `fc` for `num_classes`."""
    if weights is None or str(weights).lower() == "none":
        model = resnet18(weights=None)
    elif weights in IMAGENET_NAMES:
        model = _imagenet_resnet18(weights)
    else:
        model = _local_resnet18(Path(weights).expanduser())
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
