"""Staged fine-tuning (head first, then the backbone at a lower learning rate) that stays correct under DDP."""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BackboneFinetuning, BaseFinetuning, Callback
from torch import nn
from torch.optim import Optimizer

from lightning_lab.errors import ConfigError
from lightning_lab.models.layers import BATCH_NORMS


class StagedFinetuning(Callback):
    """Trains the head alone until epoch `unfreeze_at_epoch`, then the backbone too, at `backbone_lr_ratio` times
    the head's learning rate (a scheduler then scales both alike). `train_bn`: batch-norm layers of the backbone
    train from the start. Needs a net with a `backbone` (ResNet18); the Classifier gives it its own param group.

    Lightning's BackboneFinetuning freezes the backbone (requires_grad=False) in `setup`, before DDP wraps the
    model; DDP registers only the parameters that require grad at that moment, so after the unfreeze the backbone's
    gradients are never all-reduced and each rank's backbone drifts apart (Lightning issue 20340). Here every
    parameter requires grad from the start, so DDP registers and syncs all of them, and the backbone is held still
    by dropping its gradients before each optimizer step (optimizers skip parameters whose grad is None). The price:
    the head-only epochs still compute the backbone's gradients.
    """

    def __init__(self, unfreeze_at_epoch: int = 1, backbone_lr_ratio: float = 0.1, train_bn: bool = True) -> None:
        if unfreeze_at_epoch < 0:
            raise ConfigError(f"unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        if not backbone_lr_ratio > 0:
            raise ConfigError(f"backbone_lr_ratio must be > 0, got {backbone_lr_ratio}")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr_ratio = backbone_lr_ratio
        self.train_bn = train_bn
        self.unfrozen = False
        self._held: list[nn.Parameter] = []

    @staticmethod
    def _backbone(pl_module: L.LightningModule) -> nn.Module:
        backbone = getattr(getattr(pl_module, "net", None), "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ConfigError("StagedFinetuning needs a network with a `backbone` (e.g. lightning_lab.models.ResNet18)")
        return backbone

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before DDP wraps the model (and before configure_optimizers): everything trainable, see the class doc.
        self._backbone(pl_module).requires_grad_(True)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._held = [p for module in self._backbone(pl_module).modules()
                      if not (self.train_bn and isinstance(module, BATCH_NORMS))
                      for p in module.parameters(recurse=False)]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.unfrozen or trainer.current_epoch < self.unfreeze_at_epoch:
            return
        for optimizer in trainer.optimizers:
            names = [group.get("name") for group in optimizer.param_groups]
            if "head" not in names or "backbone" not in names:
                continue
            head, backbone = names.index("head"), names.index("backbone")
            groups = optimizer.param_groups
            groups[backbone]["lr"] = groups[head]["lr"] * self.backbone_lr_ratio
            if "initial_lr" in groups[head]:
                groups[backbone]["initial_lr"] = groups[head]["initial_lr"] * self.backbone_lr_ratio
            # Schedulers that compute the rate from their starting rates (CosineAnnealingWarmRestarts, OneCycleLR,
            # LambdaLR, ...) would put the backbone back at the head's: its schedule is the head's, scaled.
            for config in trainer.lr_scheduler_configs:
                base_lrs = getattr(config.scheduler, "base_lrs", None)
                if getattr(config.scheduler, "optimizer", None) is optimizer and base_lrs is not None:
                    base_lrs[backbone] = base_lrs[head] * self.backbone_lr_ratio
        self.unfrozen = True

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if not self.unfrozen:
            for p in self._held:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.unfrozen = bool(state_dict.get("unfrozen", False))


def refuse_finetuning_that_breaks(trainer: L.Trainer) -> None:
    """Refuse, before any training, Lightning's fine-tuning callbacks where they go wrong: BackboneFinetuning needs
    a `backbone` on the LightningModule itself (the Classifier's is on its `net`), and any BaseFinetuning freezes
    parameters before DDP wraps the model, so DDP never syncs them after the unfreeze."""
    for callback in trainer.callbacks:
        if isinstance(callback, BackboneFinetuning):
            raise ConfigError("Lightning's BackboneFinetuning needs a `backbone` on the LightningModule and is "
                              "wrong under DDP; use lightning_lab.callbacks.StagedFinetuning (its unfreeze_at_epoch is "
                              "unfreeze_backbone_at_epoch, backbone_lr_ratio is backbone_initial_ratio_lr, "
                              "train_bn the same)")
        if isinstance(callback, BaseFinetuning) and trainer.world_size > 1:
            raise ConfigError(
                f"{type(callback).__name__} freezes parameters before DDP wraps the model, so DDP never syncs "
                f"their gradients after the unfreeze and the ranks drift apart (Lightning issue 20340); use "
                f"lightning_lab.callbacks.StagedFinetuning")
