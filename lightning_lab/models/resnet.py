"""ResNet-18 from torchvision with ImageNet, no, or local weights, a new head and a deterministic global pool."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights
from torchvision.models.resnet import BasicBlock

from lightning_lab.errors import ConfigError, WeightsError
from lightning_lab.models.layers import BATCH_NORMS, GlobalAvgPool

IMAGENET_NAMES = tuple(ResNet18_Weights.__members__) + ("DEFAULT",)


def torchvision_cache_file(weights: ResNet18_Weights) -> Path:
    """Where torchvision stores (and looks for) the downloaded weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


class ResNet18(ResNet):
    """torchvision's ResNet-18 with `weights`, a fresh `fc` for `num_classes`, and `backbone` = everything but `fc`.

    weights: "IMAGENET1K_V1" (downloaded by torchvision into $TORCH_HOME), "none", or a path to a local
    state-dict file of a torchvision ResNet-18 (its `fc` is ignored). freeze_backbone trains the head only; to
    train the backbone later, add the `StagedFinetuning` callback instead. The state-dict keys are torchvision's
    own (conv1, layer1, ..., fc), so saved weights load back with `weights: PATH`.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, weights: str = "IMAGENET1K_V1",
                 freeze_backbone: bool = False) -> None:
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise ConfigError(f"ResNet-18 needs 3-channel images, got input_shape {tuple(input_shape)}")
        super().__init__(BasicBlock, [2, 2, 2, 2])
        backbone_state = _backbone_state(weights)
        if backbone_state is not None:
            self.load_state_dict(backbone_state, strict=False)  # every key but fc's, checked by _backbone_state
        self.fc = nn.Linear(self.fc.in_features, num_classes)
        # torchvision's nn.AdaptiveAvgPool2d has no deterministic CUDA backward; the mean has.
        self.avgpool = GlobalAvgPool()
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet18":
        """As nn.Module.train; a frozen backbone (no parameter of it trainable: `freeze_backbone`, unless a callback
        such as StagedFinetuning made it trainable again) keeps its BatchNorm layers in eval mode, so their running
        statistics (ImageNet's) stay as loaded too, not only their weights."""
        super().train(mode)
        if self.freeze_backbone and not any(p.requires_grad for p in self.backbone.parameters()):
            for module in self.backbone.modules():
                if isinstance(module, BATCH_NORMS):  # SyncBatchNorm too, under `sync_batchnorm`
                    module.eval()
        return self

    @property
    def backbone(self) -> nn.ModuleList:
        """Every child except the `fc` head (a view: the modules are the network's own)."""
        return nn.ModuleList(module for name, module in self.named_children() if name != "fc")


def _backbone_state(weights: str | None) -> dict[str, torch.Tensor] | None:
    """The state dict (without `fc`) that `weights` names, or None for "none"."""
    if weights is None or str(weights).lower() == "none":
        return None
    if weights in IMAGENET_NAMES:
        state = _imagenet_state(weights)
    else:
        state = _local_state(Path(weights).expanduser())
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    weights = ResNet18_Weights.DEFAULT if name == "DEFAULT" else ResNet18_Weights[name]
    cache = torchvision_cache_file(weights)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsError(
            f"could not load ResNet-18 {name} weights: {err}. torchvision looks for them in {cache} "
            f"(set TORCH_HOME to change where). Either download them there on a machine with internet "
            f"({weights.url}), or pass a local state-dict file with --model.net.init_args.weights PATH, "
            f"or train from scratch with --model.net.init_args.weights none."
        ) from err


def _local_state(path: Path) -> dict[str, torch.Tensor]:
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
    expected = {k: tuple(v.shape) for k, v in ResNet(BasicBlock, [2, 2, 2, 2]).state_dict().items()
                if not k.startswith("fc.")}
    given = {k for k in state if not k.startswith("fc.")}
    missing, unexpected = expected.keys() - given, given - expected.keys()
    if missing or unexpected:
        raise WeightsError(
            f"{path} is not a ResNet-18 state dict: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]})"
        )
    wrong = [k for k in expected if tuple(state[k].shape) != expected[k]]
    if wrong:
        raise WeightsError(f"{path} does not fit ResNet-18: {wrong[0]} has shape {list(state[wrong[0]].shape)}, "
                           f"expected {list(expected[wrong[0]])}")
    return state
