"""The one LightningModule: cross-entropy classification around an injected network."""
from __future__ import annotations

import copy
import functools
import inspect
import math
import warnings
from typing import Any, Callable, Protocol, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lightning_lab.data.base import class_names
from lightning_lab.errors import ConfigError
from lightning_lab.fast_defaults import machine_fast_defaults
from lightning_lab.models.layers import BATCH_NORMS
from lightning_lab.models.nonfinite import NonFiniteLossWatch

# Metrics shown in TensorBoard's HPARAMS tab next to each run's hyperparameters.
HPARAM_METRICS = ("val/acc_best", "test/acc", "test/loss")

NetFactory = Callable[[Sequence[int], int], nn.Module]
"""A network class (or function) called as `net(input_shape, num_classes)`; jsonargparse reads its other
arguments from the config (`class_path` + `init_args`) and leaves these two to the Classifier."""


class SchedulerFactory(Protocol):
    """An LR scheduler class from the config, called with the optimizer. Its `T_max` is never configured: the
    Classifier passes the run's length (trainer.max_epochs; the scheduler steps once per epoch) to classes that
    take one, such as CosineAnnealingLR, so changing max_epochs alone is enough. Other classes are built as given."""

    def __call__(self, optimizer: Optimizer, /, *, T_max: int) -> LRScheduler: ...


def default_optimizer(params: Any) -> Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class Classifier(L.LightningModule):
    """Cross-entropy classification of `net(input_shape, num_classes)`.

    Logs train/loss (every step, so EarlyStopping/ModelCheckpoint can monitor it), train/acc (per epoch), val/loss,
    val/acc, val/acc_best, test/loss, test/acc and, at test time, per-class accuracy, a confusion matrix and a grid of
    sample predictions to TensorBoard. A NaN/inf training loss stops the run with a NonFiniteLossError naming the
    first bad step, checked at each logging step (every `log_every_n_steps` steps) and at each epoch end.
    channels_last/compile None = what `fast_defaults` picks for the device (off on CPU).
    """

    def __init__(
        self,
        net: NetFactory,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool | None = None,
        compile: bool | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.net = net(self.input_shape, num_classes)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last_setting = channels_last
        self.compile_setting = compile
        self.uses_channels_last = False  # resolved in configure_model, once the device is known
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
        self.nonfinite = NonFiniteLossWatch()
        self._train_predictions: list[tuple[torch.Tensor, torch.Tensor]] = []  # (argmax, target) not yet counted
        self._test_samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._resumed_val_acc_best: torch.Tensor | None = None
        self._warned_lone_sample = False
        # Set by the CLI: the run's Trainer, seed, early-stopping and checkpoint settings (trainer.max_epochs, ...),
        # logged to TensorBoard with the model's and the data module's hyperparameters.
        self.run_settings: dict[str, Any] = {}

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
    def __deepcopy__(self, memo: dict[int, Any]) -> "Classifier":
        """A copy (Lightning's weight averaging makes one) shares the optimizer and scheduler factories instead of
        copying them: those LightningCLI builds hold the CLI, with its Trainer and the data module's data, which a
        copy would duplicate (and, under DDP, cannot copy at all: the Trainer holds the worker processes)."""
        for factory in (self.optimizer_factory, self.scheduler_factory):
            memo[id(factory)] = factory
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # what copy.deepcopy does by default
        return clone

    def configure_model(self) -> None:
        channels_last, compile_net = self.channels_last_setting, self.compile_setting
        if channels_last is None or compile_net is None:
            try:
                device, steps = self.trainer.strategy.root_device, self._total_steps()
            except RuntimeError:  # not attached to a Trainer: load_from_checkpoint calls configure_model too
                device, steps = self.device, None
            fast = machine_fast_defaults(device, steps if compile_net is None else None)
            channels_last = fast.channels_last if channels_last is None else channels_last
            compile_net = fast.compile if compile_net is None else compile_net
        if channels_last and not self.uses_channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.uses_channels_last = True
        if compile_net:
            self.net.compile()  # in place: state_dict keys stay those of the plain network

    def _total_steps(self) -> int | None:
        """Optimizer steps of this fit (None outside fit): compiling pays off only for long runs."""
        if self.trainer.state.fn != "fit" or self.trainer.strategy.root_device.type == "cpu":
            return None  # on CPU fast_defaults never compiles: no need to build the train loader this early
        steps = self.trainer.estimated_stepping_batches
        return int(steps) if math.isfinite(steps) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 64-true/bf16-true/16-true convert the weights; the data (and the model summary's example input) stay
        # float32, so floating input takes the weights' dtype. bf16-mixed/16-mixed keep float32 weights.
        # self.dtype: the dtype Lightning moved this module to (the precision plugins convert it with .to()).
        dtype = self.dtype
        if x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        if self.uses_channels_last and x.ndim == 4:
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
                metrics = {name: math.nan for name in HPARAM_METRICS}
                datamodule = getattr(self.trainer, "datamodule", None)
                data = {f"data.{k}": v for k, v in getattr(datamodule, "hparams", {}).items()}
                logger.log_hyperparams({**self.hparams, **data, **self.run_settings}, metrics)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if is_empty(batch):
            return self._empty_batch_loss()
        if len(batch[1]) == 1 and normalises_with_batch_statistics(self.net):
            # A loader that skips unreadable files can leave one sample in a batch (the data modules' lone last
            # batch is dropped already): BatchNorm would normalise it with the statistics of that one sample, and
            # fails where a channel holds one value ("Expected more than 1 value per channel when training").
            if not self._warned_lone_sample:
                rank = f"rank {self.global_rank}, " if self.trainer.world_size > 1 else ""
                warnings.warn(f"skipped a training batch of one sample ({rank}epoch {self.current_epoch}, batch "
                              f"{batch_idx}): BatchNorm needs the statistics of more than one; later ones are "
                              "skipped too", stacklevel=2)
                self._warned_lone_sample = True
            return self._empty_batch_loss()
        loss, logits, y = self._step(batch)
        # In callback_metrics every step (EarlyStopping/ModelCheckpoint can monitor it) as a device tensor: no read.
        # The loggers get it from _log_train_loss, which reads it together with the NaN check.
        self.log("train/loss", loss, on_step=True, on_epoch=False, logger=False)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else math.nan
        self.nonfinite.record(loss, self.global_step, self.current_epoch, batch_idx, lr)
        # train/acc is an epoch value: the step's predictions wait on the device and the metric is updated with
        # many steps at once (one torchmetrics update costs ~70 us of host time, about as much as the step of a
        # small network on a GPU); it is logged once, in on_train_epoch_end.
        self._train_predictions.append((logits.detach().argmax(dim=1), y))
        if self._is_logging_step():
            self._update_train_acc()
            self._log_train_loss(loss)
        return loss

    def _empty_batch_loss(self) -> torch.Tensor | None:
        """What training does with a batch it cannot train on (no sample, or a lone one under BatchNorm): nothing.

        One process: None, which Lightning's automatic optimization skips (no backward, no optimizer step).
        Under DDP Lightning does not support None (the other ranks would wait in the gradient all-reduce), so
        this rank joins it with a zero loss over every trainable parameter: zero gradients, averaged in."""
        if self.trainer.world_size <= 1:
            return None
        return sum((p.sum() for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device)) * 0.0

    def _log_train_loss(self, loss: torch.Tensor) -> None:
        """Write train/loss to the loggers with the NaN check, in one host read (Lightning's own logging of it
        would be a second read at each logging step)."""
        value = self.nonfinite.check(along=loss.float())
        for logger in self.loggers:
            logger.log_metrics({"train/loss": value}, step=self.global_step)

    def _update_train_acc(self) -> None:
        if self._train_predictions:
            predictions, targets = zip(*self._train_predictions)
            self._train_predictions.clear()
            self.train_acc.update(torch.cat(predictions), torch.cat(targets))

    def _is_logging_step(self) -> bool:
        """Whether Lightning writes this training step's metrics (every `log_every_n_steps` optimizer steps)."""
        return (self.global_step + 1) % max(self.trainer.log_every_n_steps, 1) == 0

    def on_train_epoch_end(self) -> None:
        self.nonfinite.check()
        self._update_train_acc()
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if is_empty(batch):
            return  # no sample: nothing to count
        loss, logits, y = self._step(batch)
        self.val_loss(loss, weight=y.numel())
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())  # compute() syncs across DDP processes
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if is_empty(batch):
            return
        loss, logits, y = self._step(batch)
        self.test_loss(loss, weight=y.numel())
        self.test_acc(logits, y)
        self.test_class_acc.update(logits, y)
        self.test_confmat.update(logits, y)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        if batch_idx == 0:
            self._test_samples = (batch[0][:32].detach().float().cpu(), logits[:32].argmax(1).cpu(), y[:32].cpu())

    def on_test_epoch_end(self) -> None:
        names = class_names(self.trainer.datamodule, self.num_classes)
        per_class = self.test_class_acc.compute()
        for name, acc in zip(names, per_class):
            self.log(f"test/acc_class/{name}", acc, sync_dist=True)
        confmat = self.test_confmat.compute().cpu()
        self.test_class_acc.reset()
        self.test_confmat.reset()
        if self.trainer.is_global_zero:
            self._log_test_figures(confmat, names)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """`batch = (x, index)`: class probabilities (float32, (B, C)) and the batch's index, unchanged."""
        x, index = batch
        return {"probs": self(x).float().softmax(dim=1), "index": index}

    # -- helpers --------------------------------------------------------------------------------------------
    def _log_test_figures(self, confmat: torch.Tensor, names: list[str]) -> None:
        from lightning_lab.models.figures import confusion_matrix_figure, prediction_grid_figure

        for logger in self.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            step = self.global_step
            logger.experiment.add_figure("test/confusion_matrix", confusion_matrix_figure(confmat, names),
                                         global_step=step)
            if self._test_samples is not None and self._test_samples[0].ndim == 4:
                images, preds, targets = self._test_samples
                logger.experiment.add_figure("test/predictions",
                                             prediction_grid_figure(images, preds, targets, names),
                                             global_step=step)

    def parameter_groups(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """The trainable parameters; for a net with a `backbone`, two groups named "head" and "backbone" (so a
        fine-tuning callback can give the backbone its own learning rate). Frozen parameters stay out."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        backbone = getattr(self.net, "backbone", None)
        if not isinstance(backbone, nn.Module):
            return trainable
        in_backbone = {id(p) for p in backbone.parameters()}
        groups = [{"params": [p for p in trainable if id(p) not in in_backbone], "name": "head"},
                  {"params": [p for p in trainable if id(p) in in_backbone], "name": "backbone"}]
        return [group for group in groups if group["params"]]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(self.scheduler_factory, optimizer, self.trainer.max_epochs)
        config: dict[str, Any] = {"scheduler": scheduler, "monitor": "val/loss"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # It steps on val/loss, which exists only in epochs that validate: step in those epochs alone.
            config["frequency"] = self.trainer.check_val_every_n_epoch or 1
        return {"optimizer": optimizer, "lr_scheduler": config}


def is_empty(batch: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether a labelled batch holds no sample (a loader that drops unreadable files can yield one)."""
    return len(batch[1]) == 0


def normalises_with_batch_statistics(net: nn.Module) -> bool:
    """Whether `net` has a BatchNorm layer in training mode that uses this process's batch alone. SyncBatchNorm
    is left out: it gathers the statistics of every process's batch, and each process must run it (a skipped one
    would leave the others waiting in its all-gather)."""
    return any(isinstance(m, BATCH_NORMS) and not isinstance(m, nn.SyncBatchNorm) and m.training
               for m in net.modules())


def scheduler_class(factory: Callable[..., Any]) -> type | None:
    """The class `factory` builds: the factory itself, or the class a functools.partial binds (jsonargparse turns
    a config's `class_path` + `init_args` into such a partial); None for any other callable."""
    if isinstance(factory, type):
        return factory
    if isinstance(factory, functools.partial):
        return next((c for c in (factory.func, *factory.args) if isinstance(c, type)), None)
    return None


def scheduled_t_max(factory: Callable[..., Any] | None, max_epochs: int | None) -> int | None:
    """The T_max the scheduler `factory` builds gets: the one its config binds, else max_epochs; None for a class
    without a T_max."""
    cls = scheduler_class(factory) if factory is not None else None
    if cls is None or "T_max" not in inspect.signature(cls).parameters:
        return None
    bound = factory.keywords if isinstance(factory, functools.partial) else {}
    return bound.get("T_max", max_epochs)


def schedule_length_from_max_epochs(factory: Callable[..., Any] | None) -> bool:
    """Whether the scheduler `factory` builds takes its T_max from trainer.max_epochs (a class that takes a T_max,
    left unset in the config)."""
    cls = scheduler_class(factory) if factory is not None else None
    bound = factory.keywords if isinstance(factory, functools.partial) else {}
    return cls is not None and "T_max" in inspect.signature(cls).parameters and "T_max" not in bound


def build_scheduler(factory: Callable[..., Any], optimizer: Optimizer, max_epochs: int | None) -> Any:
    """`factory(optimizer)`, with `T_max = max_epochs` for a scheduler class that takes a T_max left unset."""
    if not schedule_length_from_max_epochs(factory):
        return factory(optimizer)
    cls = scheduler_class(factory)
    if max_epochs is None or max_epochs < 1:
        raise ConfigError(f"{cls.__name__} runs for trainer.max_epochs epochs (its T_max), but max_epochs is "
                          f"{max_epochs}; set --trainer.max_epochs")
    return factory(optimizer, T_max=max_epochs)
