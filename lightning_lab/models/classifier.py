"""The training logic every classifier shares: loss, torchmetrics, logging, optimizer injection."""
from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lightning_lab.errors import ConfigError, LabError

# Metrics shown in TensorBoard's HPARAMS tab next to each run's hyperparameters.
HPARAM_METRICS = ("val/acc_best", "test/acc", "test/loss")


class NonFiniteLossError(LabError, FloatingPointError):
    """Training produced a NaN/inf loss; raised instead of training on garbage."""


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification around `self.net`; subclasses only build the network.

    Logs train/loss, train/acc, val/loss, val/acc, val/acc_best, test/loss, test/acc and, at test time,
    per-class accuracy, a confusion matrix and a grid of sample predictions to TensorBoard.
    """

    net: nn.Module

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last
        self.compile_net = compile
        self._check_optimizer()
        self.example_input_array = torch.zeros(2, *self.input_shape)

        def accuracy(**kwargs: Any) -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=num_classes, average="micro", **kwargs)

        # One metric object per stage: their states must not mix (Lightning and torchmetrics docs).
        # The training metric skips torchmetrics' per-step input checks (torch.unique over the targets, a
        # device sync on GPU): cross_entropy in the same step already rejects out-of-range targets.
        self.train_acc, self.val_acc, self.test_acc = accuracy(validate_args=False), accuracy(), accuracy()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.test_class_acc = MulticlassAccuracy(num_classes=num_classes, average=None)
        self.test_confmat = MulticlassConfusionMatrix(num_classes=num_classes)
        self._test_samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._pending_loss: tuple[torch.Tensor, int, int, int] | None = None
        self._resumed_val_acc_best: torch.Tensor | None = None

    # torchmetrics states are not saved in checkpoints; val/acc_best must survive a resume.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_acc_best"] = self.val_acc_best.max_value.detach().cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        best = checkpoint.get("val_acc_best")
        self._resumed_val_acc_best = best if best is not None and torch.isfinite(best) else None

    def _check_optimizer(self) -> None:
        """Build the optimizer once on a dummy parameter so bad settings (lr < 0, ...) fail before training."""
        try:
            self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as err:
            raise ConfigError(f"invalid optimizer settings: {err}") from err

    # -- network ------------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y), logits, y

    # -- stages -------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # The sanity check ran validation already; its numbers must not count as the best epoch.
        self.val_acc.reset()
        self.val_loss.reset()
        self.val_acc_best.reset()
        if self._resumed_val_acc_best is not None:
            # Resumed: the best so far comes from the checkpoint; hparams are already in this run's log folder.
            self.val_acc_best.update(self._resumed_val_acc_best)
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hparams, {name: math.nan for name in HPARAM_METRICS})

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        self._check_finite(loss, batch_idx)
        # update(), not forward(): train/acc is an epoch value, a per-batch value would be wasted work. It is
        # logged once in on_train_epoch_end: each self.log call costs ~1-2 ms of Lightning bookkeeping.
        self.train_acc.update(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._check_pending_loss()
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise NonFiniteLossError for a NaN/inf loss. On CPU at once (reading the value is free). On an
        accelerator, `if not isfinite(loss)` right after the forward would make the host wait for the forward
        every step before it can queue the backward, leaving the GPU idle meanwhile; instead each step's loss is
        checked at the next step (long computed by then) and the last one at epoch end."""
        where = (self.global_step, self.current_epoch, batch_idx)
        if loss.device.type == "cpu":
            self._raise_if_non_finite(loss, *where)
            return
        self._check_pending_loss()
        self._pending_loss = (loss.detach(), *where)

    def _check_pending_loss(self) -> None:
        pending, self._pending_loss = self._pending_loss, None
        if pending is not None:
            self._raise_if_non_finite(*pending)

    def _raise_if_non_finite(self, loss: torch.Tensor, step: int, epoch: int, batch_idx: int) -> None:
        if not torch.isfinite(loss):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {step} (epoch {epoch}, batch {batch_idx}) with learning rate "
                f"{lr:g}; lower the learning rate or check the data"
            )

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_loss(loss, weight=y.numel())
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())  # compute() syncs across DDP processes
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_loss(loss, weight=y.numel())
        self.test_acc(logits, y)
        self.test_class_acc.update(logits, y)
        self.test_confmat.update(logits, y)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        if batch_idx == 0:
            self._test_samples = (batch[0][:32].detach().cpu(), logits[:32].argmax(1).cpu(), y[:32].cpu())

    def on_test_epoch_end(self) -> None:
        class_names = self._class_names()
        per_class = self.test_class_acc.compute()
        for name, acc in zip(class_names, per_class):
            self.log(f"test/acc_class/{name}", acc, sync_dist=True)
        confmat = self.test_confmat.compute().cpu()
        self.test_class_acc.reset()
        self.test_confmat.reset()
        if self.trainer.is_global_zero:
            self._log_test_figures(confmat, class_names)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=1)

    # -- helpers --------------------------------------------------------------------------------------------
    def _class_names(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        names = getattr(datamodule, "classes", None)
        if names is not None and len(names) == self.num_classes:
            return [str(n) for n in names]
        return [str(i) for i in range(self.num_classes)]

    def _log_test_figures(self, confmat: torch.Tensor, class_names: list[str]) -> None:
        from lightning_lab.figures import confusion_matrix_figure, prediction_grid_figure

        for logger in self.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            step = self.global_step
            logger.experiment.add_figure("test/confusion_matrix", confusion_matrix_figure(confmat, class_names),
                                         global_step=step)
            if self._test_samples is not None and self._test_samples[0].ndim == 4:
                images, preds, targets = self._test_samples
                logger.experiment.add_figure("test/predictions",
                                             prediction_grid_figure(images, preds, targets, class_names),
                                             global_step=step)

    def configure_optimizers(self) -> Any:
        # Frozen parameters stay out; BaseFinetuning adds them as a new param group when it unfreezes them.
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
