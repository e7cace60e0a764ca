"""What one Ray Tune trial does: train one planned run as an ordinary LabCLI fit, in the trial's process, or
with DDP over several Ray Train workers (`ray.train.lightning`) when the run has several workers.

A trial is given absolute paths only (Ray starts it in its own working directory). It resumes the run from
its newest ``last.ckpt`` where one exists, and a run already recorded as finished (its ``run.json``) is not
trained again.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor

FINISHED = ("ok", "stopped_early")  # final statuses that are not retried
_VERSION = re.compile(r"^version_(\d+)$")
# LightningCLI warns when given `args` while the process has a command line of its own (a Ray worker's).
ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"


class TuneReportCallback(Callback):
    """Reports the validation metrics and the epoch number to Ray Tune after each validation (its schedulers,
    ASHA, decide on them)."""

    def __init__(self, prefix: str = "val/") -> None:
        self.prefix = prefix

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        from ray import tune

        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(self.prefix)}
        try:
            tune.report({**metrics, "epoch": trainer.current_epoch + 1})
        except SystemExit:
            # Tune answers the report of a trial its scheduler stops with SystemExit: end the fit cleanly after
            # this epoch instead (checkpoints, test, run.json), recorded as stopped early.
            from lightning_lab.run_record import RunRecord

            record = RunRecord.of(trainer)
            if record is not None and trainer.current_epoch + 1 < (trainer.max_epochs or 0):
                record.mark_stopped_early()
            trainer.should_stop = True


class PrepareRayTrainer(Callback):
    """Checks, once the trainer exists, that it is set up for Ray Train (`ray.train.lightning.prepare_trainer`)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from ray.train.lightning import prepare_trainer

        prepare_trainer(trainer)


# ------------------------------------------------------------------------------------------------ records
def version_dirs(run: dict[str, Any]) -> list[Path]:
    """The run's log folders <save_dir>/<dataset>_sweep/<run_id>/version_<n>, oldest first."""
    folder = Path(run["save_dir"], run["logger_name"])
    found = [p for p in folder.glob("version_*") if _VERSION.match(p.name)]
    return sorted(found, key=lambda p: int(_VERSION.match(p.name).group(1)))


def latest_record(run: dict[str, Any]) -> dict[str, Any] | None:
    """The newest run.json the run wrote (RunRecord), or None where it has none yet."""
    from lightning_lab.run_record import read_record

    for folder in reversed(version_dirs(run)):
        record = read_record(folder)
        if record is not None:
            return record
    return None


# -------------------------------------------------------------------------------------------------- fit
def fit(run: dict[str, Any], extra_args: Sequence[str] = (), callbacks: Sequence[Callback] = ()) -> None:
    """Train `run` with the lab's CLI in this process, from its last.ckpt if it has one."""
    from lightning_lab.cli import LabCLI, find_last_checkpoint
    from lightning_lab.run_record import RunRecord

    last = find_last_checkpoint(run["logger_name"], run["checkpoint_root"])
    args = ["fit", *run["args"], *extra_args] + (["--ckpt_path", str(last)] if last else [])
    every_run = [LearningRateMonitor(logging_interval="epoch"), RunRecord(run_id=run["run_id"]), *callbacks]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ARGS_WARNING)
        LabCLI(args=args, trainer_defaults={"callbacks": every_run})


def train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: config = {"run": PlannedRun.as_dict(), "options": {cpus, gpus, workers, storage}}."""
    run, options = config["run"], config["options"]
    record = latest_record(run)
    if record is not None and record.get("status") in FINISHED:
        print(f"sweep: {run['run_id']} already recorded ({record.get('status')}): not trained again", flush=True)
        return
    if int(options.get("workers") or 1) > 1:
        _train_ddp(run, options)
        return
    torch.set_num_threads(max(1, int(options.get("cpus") or 1)))
    fit(run, callbacks=[TuneReportCallback()])


# -------------------------------------------------------------------------------------------------- DDP
DDP_ARGS = [
    "--trainer.strategy", json.dumps({"class_path": "ray.train.lightning.RayDDPStrategy"}),
    "--trainer.plugins", json.dumps([{"class_path": "ray.train.lightning.RayLightningEnvironment"}]),
    "--trainer.devices", "auto", "--trainer.num_nodes", "1",
]


def _train_ddp(run: dict[str, Any], options: dict[str, Any]) -> None:
    """One run over `workers` Ray Train workers (DDP, gloo on CPU / NCCL on GPUs); worker 0's reports reach Tune."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback as RelayToTune

    workers = int(options["workers"])
    gpus = float(options.get("gpus") or 0)
    per_worker = {"CPU": float(options["worker_cpus"])}
    if gpus:
        per_worker["GPU"] = gpus / workers
    trainer = TorchTrainer(
        ddp_worker, train_loop_config={"run": run, "threads": max(1, round(per_worker["CPU"]))},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus), resources_per_worker=per_worker),
        run_config=RunConfig(name=f"{run['run_id']}-ddp", storage_path=options["storage"], callbacks=[RelayToTune()]),
    )
    trainer.fit()


def ddp_worker(config: dict[str, Any]) -> None:
    """One DDP rank: the same LabCLI fit, with Ray's strategy, environment and report callback."""
    from ray.train.lightning import RayTrainReportCallback

    torch.set_num_threads(int(config["threads"]))
    fit(config["run"], DDP_ARGS, callbacks=[PrepareRayTrainer(), RayTrainReportCallback()])
