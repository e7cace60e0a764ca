"""Every shipped config in configs/*.yaml builds its model, data module and Trainer, and `--print_config` prints a
config that reads back to itself. Nothing is downloaded: a net that takes weights gets `weights none`."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import lightning as L
import pytest
import yaml

from conftest import REPO, cli
from lightning_lab.cli import LabCLI
from lightning_lab.models import Classifier

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def load(config: Path) -> dict:
    return yaml.safe_load(config.read_text())


def net_class(config: dict) -> type:
    module, name = config["model"]["net"]["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def offline(config: Path) -> list[str]:
    """Options that keep building the config offline: no pretrained weights to fetch."""
    takes_weights = "weights" in inspect.signature(net_class(load(config))).parameters
    return ["--model.net.init_args.weights", "none"] if takes_weights else []


def test_there_are_configs_to_check() -> None:
    assert {"digits.yaml", "mnist.yaml", "cifar.yaml", "resnet18_cifar.yaml"} <= {c.name for c in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_every_config_builds_its_model_data_and_trainer(config: Path, workdir: Path) -> None:
    written = load(config)
    built = LabCLI(args=["--config", str(config), *offline(config)], run=False)
    assert isinstance(built.model, Classifier) and isinstance(built.trainer, L.Trainer)
    assert type(built.model.net) is net_class(written)
    data_class = written["data"]["class_path"].rsplit(".", 1)[-1]
    assert type(built.datamodule).__name__ == data_class
    # the model gets its input shape and number of classes from the data module
    assert built.model.num_classes == built.datamodule.num_classes
    assert built.model.input_shape == tuple(built.datamodule.input_shape)
    assert built.trainer.max_epochs == written["trainer"]["max_epochs"]
    for key, value in (written["data"].get("init_args") or {}).items():
        assert built.datamodule.hparams[key] == value, key
    assert not any(workdir.iterdir()), "building a run must not write anything"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_print_config_prints_a_config_that_reads_back_to_itself(config: Path, workdir: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    assert cli("fit", "--config", str(config), "--print_config") == 0
    printed = capsys.readouterr().out
    full = yaml.safe_load(printed)
    written = load(config)
    assert full["model"]["net"]["class_path"] == written["model"]["net"]["class_path"]
    assert full["data"]["class_path"] == written["data"]["class_path"]
    assert full["trainer"]["max_epochs"] == written["trainer"]["max_epochs"]
    (workdir / "printed.yaml").write_text(printed)
    assert cli("fit", "--config", "printed.yaml", "--print_config") == 0
    assert capsys.readouterr().out == printed
