"""Where the lab keeps things: folder names, file names and the version-folder pattern, in one place."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
LOG_DIR = "lightning_logs"           # TensorBoard runs: <LOG_DIR>/<experiment>/version_<n>/
CHECKPOINT_ROOT = "checkpoints"      # checkpoints: <CHECKPOINT_ROOT>/<experiment>/version_<n>/
RESULTS_DIR = "results"              # CSVs, REPORT.md, plots, Ray's experiment folder

CONFIG_NAME = "config.yaml"          # the resolved config LightningCLI saves beside the logs
RECORD_NAME = "run.json"             # a run's self-description
LAST_CKPT_NAME = "last.ckpt"
BEST_WEIGHTS_NAME = "best_weights.pt"  # plain state dict of the bare network
BEST_MODEL_NAME = "model.ckpt"       # the checkpoint in a best-model folder (checkpoints/best/<dataset>/<kind>/)

VERSION_DIR = re.compile(r"^version_(\d+)$")


def dataset_name(data_class_path: Any) -> str:
    """lightning_lab.data.CIFAR10DataModule -> cifar10, CatsDogsDataModule -> cats_dogs (as the configs name it)."""
    name = str(data_class_path).rsplit(".", 1)[-1].removesuffix("DataModule")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", name).lower() or "data"
