"""`RunRecord`: a Lightning callback that writes `run.json`, the self-description of a fit run.

The file lies next to the `config.yaml` LightningCLI saves, in the run's log folder (`trainer.log_dir`, e.g.
``lightning_logs/digits_sweep/<run_id>/version_0/run.json``). Only global rank 0 writes, always atomically
(a temporary file renamed over ``run.json``), so a reader never sees half a record.

API::

    RunRecord(run_id: str | None = None)                  the callback; RunRecord.of(trainer) -> RunRecord | None
    RunRecord.mark_stopped_early() -> None                 in-process: this run was stopped by a scheduler
    mark_status(where, status: str, error: str | None = None) -> dict     from outside (e.g. the sweep driver)
    read_record(where) -> dict | None;  write_record(where, record) -> Path;  record_path(where) -> Path
        `where`: a log folder or a run.json path
    FINAL_STATUSES = ("ok", "failed", "stopped_early")

Schema (``SCHEMA_VERSION`` 1)::

    {"schema": 1, "run_id": "digits-1a2b3c4d",
     "status": "ok",                  # ok | failed | stopped_early  (final)
                                      # running | interrupted       (not final: the run is resumable)
     "error": null,                   # "Type: message" when failed
     "config": {...},                 # the resolved config: the log folder's config.yaml, else the hparams
     "metrics": {"val/acc": 0.97,     # best val/acc over the epochs (the selection metric)
                 "best_epoch": 7,     # 0-based epoch of that best
                 "test/acc": 0.96, "test/loss": 0.12,   # null until a test ran after fit
                 "epochs": 10,        # epochs completed
                 "params": 12345},    # parameters of the LightningModule
     "checkpoint": "/abs/checkpoints/.../epoch007-acc0.9700.ckpt",  # best checkpoint, "" if none
     "weights": "/abs/checkpoints/.../best_weights.pt",            # "" if not written
     "log_dir": "/abs/lightning_logs/...", "config_file": "/abs/.../config.yaml",
     "started_at": "2026-11-25T15:30:00+00:00",   # first attempt (kept across resumes)
     "attempt_started_at": "...",                 # this attempt
     "finished_at": "..." | null,                 # set with a final status
     "updated_at": "...",                         # every write; readers keep the newest record of a run id
     "wall_time_s": 12.3,             # seconds of fit (+ test after it), summed over attempts
     "attempts": 1, "host": "node1", "device": "cuda:0 (NVIDIA H100 80GB HBM3)", "world_size": 1}

When it is written: at fit start and after every validation epoch (status ``running``, metrics so far), at fit
end (``ok``), after a test that follows the fit in the same trainer (LabCLI's ``test_after_fit``: the test
metrics are added, the status stays), and on an exception (``failed``; Ctrl-C gives ``interrupted``). A process
killed outright leaves ``running``. Validate/test/predict-only runs write nothing.

Resuming (``--ckpt_path``): the callback's state travels in the checkpoint (``state_dict``), so a resumed run
keeps the ``started_at`` of its first attempt, its best val/acc, and adds up ``wall_time_s``; ``attempts``
counts the starts. (A resumed run logs into the same version folder, so it rewrites the same ``run.json``.)

Early stopping by a scheduler (``stopped_early``): nothing in a trainer tells "stopped by a scheduler" from
"stopped by EarlyStopping" (which is part of a normal, full-budget run and gives ``ok``), so it must be said:

- in the training process: ``record.mark_stopped_early()`` on the RunRecord of the trainer (find it with
  ``RunRecord.of(trainer)``), e.g. from a callback that then sets ``trainer.should_stop = True``;
- from outside (the sweep driver, after Ray Tune's ASHA stopped the trial and its process is gone):
  ``mark_status(log_dir_or_run_json, "stopped_early")``. A RunRecord still running in that attempt never
  turns that status back.
"""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["RunRecord", "RECORD_NAME", "FINAL_STATUSES", "read_record", "write_record", "record_path", "mark_status"]

RECORD_NAME = "run.json"
CONFIG_NAME = "config.yaml"
SCHEMA_VERSION = 1
FINAL_STATUSES = ("ok", "failed", "stopped_early")
STATUSES = (*FINAL_STATUSES, "running", "interrupted")
VAL_METRIC = "val/acc"
TEST_METRICS = ("test/acc", "test/loss")


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
    """Write a record atomically: a temporary file in the same folder renamed over run.json."""
    path = record_path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def mark_status(where: str | os.PathLike, status: str, error: str | None = None) -> dict[str, Any]:
    """Set the status of an existing record (e.g. the sweep driver marking a trial ASHA stopped as
    ``stopped_early``); a final status also sets ``finished_at``. Returns the new record."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    record = read_record(where)
    if record is None:
        raise FileNotFoundError(f"no readable {RECORD_NAME} at {record_path(where)}")
    stamp = now_iso()
    record.update(status=status, updated_at=stamp)
    if error is not None:
        record["error"] = error
    if status in FINAL_STATUSES:
        record["finished_at"] = record.get("finished_at") or stamp
    write_record(where, record)
    return record


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
    """Writes run.json (status, resolved config, metrics, files, times, host, device) for each fit run; rank 0.

    `run_id`: the run's name in results; by default the log folder relative to the logger's root, e.g.
    ``digits_cnn/version_3``. Full description of the file and of `stopped_early`: this module's docstring.
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self._stopped_early = False
        self._fitting = False
        self._restored: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._started_at: str | None = None
        self._attempt_started_at: str | None = None
        self._attempt_clock = 0.0
        self._previous_wall = 0.0
        self._attempts = 0
        self._best: float | None = None
        self._best_epoch: int | None = None
        self._epochs = 0
        self._test: dict[str, float | None] = dict.fromkeys(TEST_METRICS)
        self._config: dict[str, Any] = {}  # read at the first write (the hparams until config.yaml exists)
        self._config_file = False
        self._log_dir: str | None = None
        self._finished_at: str | None = None

    @staticmethod
    def of(trainer: L.Trainer) -> RunRecord | None:
        """The RunRecord among a trainer's callbacks, if any."""
        return next((c for c in trainer.callbacks if isinstance(c, RunRecord)), None)

    def mark_stopped_early(self) -> None:
        """Record this run as `stopped_early` (stopped by a scheduler, not a full-budget run)."""
        self._stopped_early = True

    # -- state that survives a resume ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started_at": self._started_at, "wall_time_s": self._wall_time(),
                "attempts": self._attempts, "best": self._best, "best_epoch": self._best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied at train start: a test after fit also restores callbacks from the best checkpoint, whose
        # (older) state must not roll the record back.
        self._restored = dict(state_dict)

    # -- hooks ------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING:
            return
        self._reset()
        self._fitting = True
        self._stopped_early = False
        self._attempt_started_at = self._started_at = now_iso()
        self._attempt_clock = time.monotonic()
        self._attempts = 1
        self._log_dir = trainer.log_dir

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "running")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restored, self._restored = self._restored, None
        if restored:  # resumed from a checkpoint written by a RunRecord
            self._started_at = restored.get("started_at") or self._started_at
            self._previous_wall = float(restored.get("wall_time_s") or 0.0)
            self._attempts = int(restored.get("attempts") or 0) + 1
            self._best, self._best_epoch = restored.get("best"), restored.get("best_epoch")
            self._write(trainer, pl_module, "running")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = _scalar(trainer.callback_metrics.get(VAL_METRIC))
        if value is not None and (self._best is None or value > self._best):
            self._best, self._best_epoch = value, trainer.current_epoch
        self._epochs = trainer.current_epoch + 1
        self._write(trainer, pl_module, "running")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting:
            return
        self._epochs = trainer.current_epoch
        self._finished_at = now_iso()
        self._write(trainer, pl_module, "stopped_early" if self._stopped_early else "ok")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restored = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting or self._finished_at is None:  # only a test that follows this trainer's fit
            return
        for name in TEST_METRICS:
            self._test[name] = _scalar(trainer.callback_metrics.get(name))
        self._finished_at = now_iso()
        self._write(trainer, pl_module, "stopped_early" if self._stopped_early else "ok")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self._fitting:
            return
        if isinstance(exception, KeyboardInterrupt):
            self._write(trainer, pl_module, "interrupted")
            return
        self._finished_at = now_iso()
        message = str(exception).strip().splitlines()
        error = type(exception).__name__ + (f": {message[0]}" if message else "")
        self._write(trainer, pl_module, "failed", error=error)

    # -- the record ---------------------------------------------------------------------------------------
    def _wall_time(self) -> float:
        running = time.monotonic() - self._attempt_clock if self._attempt_started_at else 0.0
        return round(self._previous_wall + running, 3)

    @staticmethod
    def _read_config(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The config.yaml LightningCLI saved in the log folder; without it (a plain Trainer), the hparams."""
        if trainer.log_dir:
            try:
                config = yaml.safe_load((Path(trainer.log_dir) / CONFIG_NAME).read_text(encoding="utf-8"))
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

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str,
               error: str | None = None) -> None:
        if not trainer.is_global_zero or not self._log_dir:
            return
        if not self._config_file:  # LightningCLI saves config.yaml in its own setup hook, maybe after ours
            self._config = self._read_config(trainer, pl_module)
            self._config_file = (Path(self._log_dir) / CONFIG_NAME).is_file()
        existing = read_record(self._log_dir)
        if (existing and existing.get("status") == "stopped_early"
                and existing.get("attempt_started_at") == self._attempt_started_at and status != "failed"):
            status = "stopped_early"  # marked from outside (mark_status) during this attempt: keep it
            self._finished_at = existing.get("finished_at") or self._finished_at
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or ""
        weights = getattr(checkpoint, "best_weights_path", None)  # LabCheckpoint writes it at train end
        if not weights and best_path:
            weights = Path(best_path).with_name("best_weights.pt")
        record = {
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id or self._default_run_id(trainer),
            "status": status,
            "error": error,
            "config": self._config,
            "metrics": {VAL_METRIC: self._best, "best_epoch": self._best_epoch, **self._test,
                        "epochs": self._epochs, "params": sum(p.numel() for p in pl_module.parameters())},
            "checkpoint": _absolute(best_path) if best_path and os.path.isfile(best_path) else "",
            "weights": _absolute(weights) if weights and os.path.isfile(weights) else "",
            "log_dir": _absolute(self._log_dir),
            "config_file": _absolute(Path(self._log_dir) / CONFIG_NAME) if self._config_file else "",
            "started_at": self._started_at,
            "attempt_started_at": self._attempt_started_at,
            "finished_at": self._finished_at if status in FINAL_STATUSES else None,
            "updated_at": now_iso(),
            "wall_time_s": self._wall_time(),
            "attempts": self._attempts,
            "host": socket.gethostname(),
            "device": _device(pl_module),
            "world_size": trainer.world_size,
        }
        try:
            write_record(self._log_dir, record)
        except OSError as err:  # a full or read-only disk costs the record, not the training
            rank_zero_warn(f"RunRecord could not write {record_path(self._log_dir)}: {err}")
