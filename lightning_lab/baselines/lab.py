"""The config itself, as the lab trains it: parsed and built by LabCLI, fitted and tested by its Trainer."""
from __future__ import annotations

import time
import warnings

import lightning as L

from lightning_lab.baselines.textbook import NetworkResult
from lightning_lab.callbacks import RunRecord
from lightning_lab.cli import LabCLI, resolve_config_paths, run_test_on_best_checkpoint
from lightning_lab.errors import ConfigError
from lightning_lab.quiet import ARGS_WARNING

# The comparison's runs log and checkpoint as <experiment>_baselines: never among `fit`'s runs of the experiment,
# whose newest last.ckpt `fit --ckpt_path last` resumes.
EXPERIMENT_SUFFIX = "_baselines"


def on_one_device(args: list[str]) -> list[str]:
    """`args` with `--trainer.devices 1` after the last config file: the comparison runs in this one process (a
    DDP launch would start every rank on the whole command, baselines included)."""
    ends = [i + (1 if a in ("--config", "-c") else 0) for i, a in enumerate(args)
            if a in ("--config", "-c") or a.startswith("--config=")]
    at = ends[-1] + 1 if ends else 0
    return [*args[:at], "--trainer.devices", "1", *args[at:]]


class BaselinesCLI(LabCLI):
    """LabCLI naming the experiment `<name>_baselines` (logger and checkpoint folders)."""

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        # (A run without a logger cannot train: the lab's LearningRateMonitor needs one.)
        loggers = self.config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if hasattr(logger, "get") and logger.get("init_args") is not None:
                logger.init_args.name = f"{logger.init_args.get('name') or 'default'}{EXPERIMENT_SUFFIX}"


def lab_cli(args: list[str]) -> LabCLI:
    """Model, data module and Trainer of `args` (`--config C` and overrides), built as `fit` builds them, under the
    experiment name `<name>_baselines`."""
    with warnings.catch_warnings():
        # We pass args on purpose while sys.argv holds the whole `baselines` command line.
        warnings.filterwarnings("ignore", message=ARGS_WARNING)
        cli = BaselinesCLI(args=resolve_config_paths(on_one_device(args)), run=False)
    if cli.trainer.world_size > 1:
        raise ConfigError(f"baselines runs in one process, but the trainer asks for {cli.trainer.world_size} "
                          f"(devices x num_nodes); leave --trainer.devices and --trainer.num_nodes at 1")
    return cli


def train_lab(cli: LabCLI, seed: int) -> NetworkResult:
    """Fit the config for its max_epochs and test its best checkpoint (by the config's checkpoint.monitor), as
    `fit` with `test_after_fit` does, and finish its run record as `fit` does."""
    L.seed_everything(seed, verbose=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    metrics = run_test_on_best_checkpoint(cli.trainer, cli.model, cli.datamodule, verbose=False)
    record = RunRecord.of(cli.trainer)
    if record is not None:
        record.finish(cli.trainer)  # `ok`, with the test metrics, as `fit` finishes its record
    params = sum(p.numel() for p in cli.model.net.parameters())
    return NetworkResult(float(metrics["test/acc"]), float(metrics["test/loss"]), params, seconds)
