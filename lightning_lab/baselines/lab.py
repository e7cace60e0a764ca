"""The config itself, as the lab trains it: parsed and built by LabCLI, fitted and tested by its Trainer."""
from __future__ import annotations

import time

import lightning as L

from lightning_lab.baselines.textbook import NetworkResult
from lightning_lab.cli import LabCLI, resolve_config_paths


def lab_cli(args: list[str]) -> LabCLI:
    """Model, data module and Trainer of `args` (`--config C` and overrides), built as `fit` builds them."""
    return LabCLI(args=resolve_config_paths(args), run=False)


def train_lab(cli: LabCLI, seed: int) -> NetworkResult:
    """Fit the config for its max_epochs and test its best checkpoint (by val/acc), as `fit` with
    `test_after_fit` does."""
    L.seed_everything(seed, verbose=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    params = sum(p.numel() for p in cli.model.net.parameters())
    return NetworkResult(float(metrics["test/acc"]), float(metrics["test/loss"]), params, seconds)
