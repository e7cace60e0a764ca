"""checkpoints/best/<dataset>/<kind>/: the best run so far of each model kind (cnn, resnet18, mlp) per dataset.

The folder holds ``model.ckpt`` (the Lightning checkpoint), ``best_weights.pt`` (plain state dict of the bare
network, e.g. ``ParametricCNN``), ``config.yaml`` (the run's full config) and ``best.json`` (run id, metrics,
where they came from). A run replaces it only with a strictly higher val/acc (the selection metric; test
accuracy is reported, never used to choose). The swap happens under a lock, via a temporary folder renamed
into place, so concurrent shards never leave a half-written folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lightning_lab.experiments.results import locked

BEST_DIR = "best"
INFO_NAME = "best.json"
CHECKPOINT_NAME = "model.ckpt"
WEIGHTS_NAME = "best_weights.pt"
CONFIG_NAME = "config.yaml"


def best_dir(checkpoint_root: str | os.PathLike, dataset: str, kind: str) -> Path:
    return Path(checkpoint_root) / BEST_DIR / dataset / kind


def read_best(checkpoint_root: str | os.PathLike, dataset: str, kind: str) -> dict[str, Any] | None:
    path = best_dir(checkpoint_root, dataset, kind) / INFO_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def promote(row: dict[str, Any], kind: str, checkpoint_root: str | os.PathLike = "checkpoints") -> Path | None:
    """Copy a finished run into checkpoints/best/<dataset>/<kind>/ if it beats the kept one on val/acc.
    Returns the folder when it was replaced, else None."""
    score = row.get("val_acc")
    source = row.get("checkpoint")
    if row.get("status") != "ok" or score is None or not source or not Path(source).is_file():
        return None
    target = best_dir(checkpoint_root, row["dataset"], kind)
    with locked(target.parent, f".{kind}.lock"):
        current = read_best(checkpoint_root, row["dataset"], kind)
        if current is not None and current.get("val_acc") is not None and float(current["val_acc"]) >= score:
            return None
        staging = target.parent / f".{kind}.new-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(source, staging / CHECKPOINT_NAME)
        files = {"checkpoint": CHECKPOINT_NAME}
        for key, name in (("weights", WEIGHTS_NAME), ("run_config", CONFIG_NAME)):
            if row.get(key) and Path(row[key]).is_file():
                shutil.copy2(row[key], staging / name)
                files[key] = name
        info = {k: row.get(k) for k in ("run_id", "study", "dataset", "model", "config", "val_acc", "test_acc",
                                        "test_loss", "epochs", "params", "wall_time_s", "command", "finished_at")}
        info.update(kind=kind, files=files,
                    source={k: row.get(k) for k in ("checkpoint", "weights", "run_config", "log_dir")})
        (staging / INFO_NAME).write_text(json.dumps(info, indent=2, default=str) + "\n")
        retired = target.parent / f".{kind}.old-{os.getpid()}"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    return target
