"""`RunRecord`: a Lightning callback that describes a fit run in `run.json` beside its `config.yaml`.

The record has one writer. In a plain `fit` that is this callback (global rank 0, atomic writes). In a sweep the
sweep driver is the writer: the trial hands each new version of the record to it (`RunRecord.sink`, set by the
trial's Tune reporting callback) and the driver adds the status Ray's trial lifecycle gives.

Schema::

    {"run_id": "digits-1a2b3c4d",
     "status": "ok",            # ok: trained to its budget and tested (or fit without a test) | running |
                                # failed (+ "error": its first line) | interrupted | stopped_early (a sweep's
                                # scheduler stopped it; only the sweep driver writes this one)
     "error": null,
     "config": {...},           # the resolved config (the log folder's config.yaml, else the hparams)
     "metrics": {"val/acc": 0.97, "best_epoch": 7,    # of the epoch the best checkpoint keeps (the selection)
                 "test/acc": 0.96, "test/loss": 0.12,  # null until the test after fit ran
                 "epochs": 10, "step": 210, "params": 12345},
     "checkpoint": "/abs/.../epoch007-acc0.9700.ckpt", "weights": "/abs/.../best_weights.pt",
     "log_dir": "/abs/lightning_logs/...", "config_file": "/abs/.../config.yaml",
     "started_at": "...", "attempt_started_at": "...", "finished_at": "..." | null, "updated_at": "...",
     "wall_time_s": 12.3, "attempts": 1, "host": "node1", "device": "cpu", "world_size": 1}

When: at fit start and after every validation epoch (`running`); `ok` only when `finish()` is called, which
`LabCLI` does after the test that follows the fit (a Trainer used without LabCLI calls
``RunRecord.of(trainer).finish(trainer)`` itself); `failed` on an exception, `interrupted` on Ctrl-C. A process
killed outright leaves `running`. Resuming (``--ckpt_path``) restores the callback's state from the checkpoint:
the first start, the best epoch so far, the summed wall time and the attempt count carry over.

The best epoch is the one the run's best checkpoint keeps: chosen on the checkpoint callback's monitor and mode
(val/acc, max by default; a config may choose on val/loss, or keep the last epoch with no monitor), so `val/acc`,
`best_epoch`, `checkpoint` and the test metrics all describe the same weights.
"""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from lightning_lab.atomic import atomic_write_text
from lightning_lab.errors import first_line
from lightning_lab.paths import BEST_WEIGHTS_NAME, CONFIG_NAME, RECORD_NAME

__all__ = ["RunRecord", "STATUSES", "read_record", "write_record", "record_path", "now_iso"]

STATUSES = ("ok", "stopped_early", "failed", "interrupted", "running")
VAL_METRIC = "val/acc"
TEST_METRICS = ("test/acc", "test/loss")

Sink = Callable[["dict[str, Any] | None"], None]


def now_iso() -> str:
    """The current time, ISO 8601 with its time zone (UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_path(where: str | os.PathLike) -> Path:
    """`where` itself if it names a run.json, else `where`/run.json (a log folder)."""
    path = Path(where)
    return path if path.name == RECORD_NAME else path / RECORD_NAME


def read_record(where: str | os.PathLike) -> dict[str, Any] | None:
    """The record in a log folder (or run.json path), or None when there is none or it is unreadable."""
    try:
        data = json.loads(record_path(where).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(where: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write a record atomically (a reader sees the old record or the new one, never half of one)."""
    return atomic_write_text(record_path(where), json.dumps(record, indent=2, default=str) + "\n")


def _selection(trainer: L.Trainer) -> tuple[str | None, str | None]:
    """(metric, "max"|"min") the trainer's best checkpoint is chosen on; (None, None) when the run keeps its last
    epoch (a checkpoint without a monitor, or none: the test after fit then scores the last weights)."""
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and getattr(checkpoint, "monitor", None):
        return checkpoint.monitor, checkpoint.mode
    return None, None


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None


def _absolute(path: Any) -> str:
    return os.path.abspath(path) if path else ""


def _device(pl_module: L.LightningModule) -> str:
    device = pl_module.device
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


class RunRecord(Callback):
    """Describes each fit run in run.json (status, resolved config, metrics, files, times, host, device).

    `run_id`: the run's name in results; by default the log folder relative to the logger's root, e.g.
    ``digits_cnn/version_3``. `sink`: where each new version of the record goes; None writes run.json (global
    rank 0 only). A sink is called on every rank with the record on rank 0 and None elsewhere, so that Ray
    Train's workers report in step.
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.sink: Sink | None = None
        self._fitting = False
        self._restored: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._started_at: str | None = None
        self._attempt_started_at: str | None = None
        self._attempt_clock = 0.0
        self._previous_wall = 0.0
        self._attempts = 0
        self._best: float | None = None        # val/acc of the best epoch
        self._best_score: float | None = None  # the checkpoint's monitored value at that epoch
        self._best_epoch: int | None = None
        self._epochs = 0
        self._step = 0
        self._test: dict[str, float | None] = dict.fromkeys(TEST_METRICS)
        self._config: dict[str, Any] = {}
        self._config_file = False
        self._log_dir: str | None = None
        self._finished_at: str | None = None

    @staticmethod
    def of(trainer: L.Trainer) -> RunRecord | None:
        """The RunRecord among a trainer's callbacks, if any."""
        return next((c for c in trainer.callbacks if isinstance(c, RunRecord)), None)

    # -- state that survives a resume ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started_at": self._started_at, "wall_time_s": self._wall_time(),
                "attempts": self._attempts, "best": self._best, "best_score": self._best_score,
                "best_epoch": self._best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied at train start: a test after fit restores callbacks from the best checkpoint too, whose (older)
        # state must not roll the record back.
        self._restored = dict(state_dict)

    # -- hooks --------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING:
            return
        self._reset()
        self._fitting = True
        self._attempt_started_at = self._started_at = now_iso()
        self._attempt_clock = time.monotonic()
        self._attempts = 1
        self._log_dir = trainer.log_dir  # read here, on every rank: the property is a collective

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning restores callback states before this hook (also when the checkpoint ends the training: a
        # run killed between its last epoch and its test resumes straight into the test).
        restored, self._restored = self._restored, None
        if restored:  # resumed from a checkpoint written with a RunRecord
            self._started_at = restored.get("started_at") or self._started_at
            self._previous_wall = float(restored.get("wall_time_s") or 0.0)
            self._attempts = int(restored.get("attempts") or 0) + 1
            self._best, self._best_epoch = restored.get("best"), restored.get("best_epoch")
            self._best_score = restored.get("best_score")
            if self._best_score is None and _selection(trainer)[0] == VAL_METRIC:
                self._best_score = self._best  # a checkpoint from before best_score was kept: the same number
        self._publish(trainer, pl_module, "running")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epochs, self._step = trainer.current_epoch, trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        monitor, mode = _selection(trainer)
        score = _scalar(trainer.callback_metrics.get(monitor)) if monitor else None
        if monitor is None or (score is not None and (
                self._best_score is None or (score > self._best_score if mode == "max" else score < self._best_score))):
            self._best_score, self._best_epoch = score, trainer.current_epoch
            self._best = _scalar(trainer.callback_metrics.get(VAL_METRIC))
        self._epochs, self._step = trainer.current_epoch + 1, trainer.global_step
        self._publish(trainer, pl_module, "running")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting:
            self._epochs, self._step = trainer.current_epoch, trainer.global_step

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restored = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting:  # only a test that follows this trainer's fit
            for name in TEST_METRICS:
                self._test[name] = _scalar(trainer.callback_metrics.get(name))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self._fitting:
            return
        if isinstance(exception, KeyboardInterrupt):
            self._publish(trainer, pl_module, "interrupted")
            return
        self._finished_at = now_iso()
        self._publish(trainer, pl_module, "failed", error=first_line(exception))

    def finish(self, trainer: L.Trainer) -> None:
        """The run is complete (fit to its budget, then the test if one follows): record it `ok`."""
        if not self._fitting or trainer.interrupted:
            return
        self._finished_at = now_iso()
        self._publish(trainer, trainer.lightning_module, "ok")
        self._fitting = False

    # -- the record ---------------------------------------------------------------------------------------------
    def _wall_time(self) -> float:
        running = time.monotonic() - self._attempt_clock if self._attempt_started_at else 0.0
        return round(self._previous_wall + running, 3)

    def _read_config(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The config.yaml LightningCLI saved in the log folder; without it (a plain Trainer), the hparams."""
        if self._log_dir:
            try:
                config = yaml.safe_load((Path(self._log_dir) / CONFIG_NAME).read_text(encoding="utf-8"))
                if isinstance(config, dict):
                    return config
            except (OSError, yaml.YAMLError):
                pass
        config: dict[str, Any] = {"model": dict(pl_module.hparams)}
        if trainer.datamodule is not None and getattr(trainer.datamodule, "hparams", None):
            config["data"] = dict(trainer.datamodule.hparams)
        return json.loads(json.dumps(config, default=str))

    def _default_run_id(self, trainer: L.Trainer) -> str:
        logger = trainer.logger
        if logger is not None and logger.root_dir and self._log_dir:
            relative = os.path.relpath(self._log_dir, os.path.dirname(logger.root_dir))
            return Path(relative).as_posix()
        return Path(self._log_dir or "run").name

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str,
               error: str | None = None) -> dict[str, Any]:
        """The record as of now (rank 0's view)."""
        if not self._config_file:  # LightningCLI saves config.yaml in its own setup hook, maybe after ours
            self._config = self._read_config(trainer, pl_module)
            self._config_file = bool(self._log_dir) and (Path(self._log_dir) / CONFIG_NAME).is_file()
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or ""
        weights = getattr(checkpoint, "best_weights_path", None) or (
            Path(best_path).with_name(BEST_WEIGHTS_NAME) if best_path else None)
        return {
            "run_id": self.run_id or self._default_run_id(trainer),
            "status": status,
            "error": error,
            "config": self._config,
            "metrics": {VAL_METRIC: self._best, "best_epoch": self._best_epoch, **self._test,
                        "epochs": self._epochs, "step": self._step,
                        "params": sum(p.numel() for p in pl_module.parameters())},
            "checkpoint": _absolute(best_path) if best_path and os.path.isfile(best_path) else "",
            "weights": _absolute(weights) if weights and os.path.isfile(weights) else "",
            "log_dir": _absolute(self._log_dir),
            "config_file": _absolute(Path(self._log_dir) / CONFIG_NAME) if self._config_file else "",
            "started_at": self._started_at,
            "attempt_started_at": self._attempt_started_at,
            "finished_at": self._finished_at if status in ("ok", "failed") else None,
            "updated_at": now_iso(),
            "wall_time_s": self._wall_time(),
            "attempts": self._attempts,
            "host": socket.gethostname(),
            "device": _device(pl_module),
            "world_size": trainer.world_size,
        }

    def _publish(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str,
                 error: str | None = None) -> None:
        record = self.record(trainer, pl_module, status, error) if trainer.is_global_zero else None
        if self.sink is not None:
            self.sink(record)
            return
        if record is None or not self._log_dir:
            return
        try:
            write_record(self._log_dir, record)
        except OSError as err:  # a full or read-only disk costs the record, not the training
            rank_zero_warn(f"RunRecord could not write {record_path(self._log_dir)}: {err}")
