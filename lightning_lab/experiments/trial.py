"""What one Ray Tune trial does: train one planned run as an ordinary `fit` of the lab's CLI, with the callbacks a
plain fit gets (`cli.default_callbacks`) plus the report to Tune; with DDP over Ray Train workers
(`ray.train.lightning`) when the run has several workers.

Continuing: every trial fits with ``--ckpt_path last`` in the run's one version folder (the plan pins
``version_0``), exactly as ``fit --ckpt_path last`` continues a plain run: from the newest last.ckpt, in the same
TensorBoard run. A run killed before its first checkpoint starts over; its stale event files are removed first.

The record: the trial writes no run.json. Each new version of the run's record (`RunRecord`) travels to the
sweep driver with `tune.report`, and the driver, which knows how the trial ended, writes it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_lab.checkpoint import find_last_checkpoint
from lightning_lab.quiet import ARGS_WARNING

RECORD_KEY = "record"


def report(record: dict[str, Any] | None, ddp: bool) -> None:
    """Hand a version of the record to Tune (through Ray Train's report on every DDP worker, in step)."""
    metrics: dict[str, Any] = {}
    if record is not None:
        numbers = record["metrics"]
        metrics = {"epoch": numbers["epochs"], RECORD_KEY: json.dumps(record, default=str)}
        if numbers.get("val/acc") is not None:
            metrics["val/acc"] = numbers["val/acc"]
    if ddp:
        from ray import train

        train.report(metrics)
    else:
        from ray import tune

        tune.report(metrics)


class ReportToTune(Callback):
    """Makes the trainer's RunRecord report to Tune instead of writing run.json (the sweep driver writes it)."""

    def __init__(self, ddp: bool = False) -> None:
        self.ddp = ddp

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from lightning_lab.callbacks.run_record import RunRecord

        record = RunRecord.of(trainer)
        if record is None:
            raise RuntimeError("a sweep trial needs the RunRecord of cli.default_callbacks()")
        record.sink = lambda rec: report(rec, self.ddp)


class PrepareRayTrainer(Callback):
    """Checks, once the trainer exists, that it is set up for Ray Train (`ray.train.lightning.prepare_trainer`)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from ray.train.lightning import prepare_trainer

        prepare_trainer(trainer)


def _start_over_if_no_checkpoint(run: dict[str, Any]) -> None:
    """A run without a last.ckpt trains from its first step: events a killed attempt logged would overlap it."""
    if find_last_checkpoint(run["logger_name"], run["checkpoint_root"]) is None:
        for stale in Path(run["log_dir"]).glob("events.out.tfevents.*"):
            stale.unlink(missing_ok=True)


def fit(run: dict[str, Any], extra_args: Sequence[str] = (), callbacks: Sequence[Callback] = ()) -> None:
    """Train `run` with the lab's CLI in this process, continuing from its last.ckpt if it has one."""
    from lightning_lab.cli import LabCLI, default_callbacks

    args = ["fit", *run["args"], *extra_args, "--ckpt_path", "last"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ARGS_WARNING)
        LabCLI(args=args, trainer_defaults={"callbacks": [*default_callbacks(run["run_id"]), *callbacks]})


def train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: config = {"run": PlannedRun.as_dict(), "options": {cpus, gpus, workers, ...}}."""
    run, options = config["run"], config["options"]
    _start_over_if_no_checkpoint(run)
    if int(options.get("workers") or 1) > 1:
        _train_ddp(run, options)
        return
    torch.set_num_threads(max(1, int(options.get("cpus") or 1)))
    fit(run, callbacks=[ReportToTune()])


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
    """One DDP rank: the same LabCLI fit, with Ray's strategy and environment; rank 0's record reaches Tune."""
    torch.set_num_threads(int(config["threads"]))
    fit(config["run"], DDP_ARGS, callbacks=[PrepareRayTrainer(), ReportToTune(ddp=True)])
