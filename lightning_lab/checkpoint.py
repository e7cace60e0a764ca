"""Checkpoints: find the newest last.ckpt of an experiment, read one (with a clear error for a bad file), and
tell which model a checkpoint holds. Used by the CLI (fit/test/predict), classify and the study."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from lightning_lab.errors import ConfigError
from lightning_lab.paths import CHECKPOINT_ROOT, VERSION_DIR

# --ckpt_path values that Lightning resolves itself (not files).
CKPT_ALIASES = ("last", "best", "hpc")


def find_last_checkpoint(experiment: str, root: str = CHECKPOINT_ROOT) -> Path | None:
    """The newest last.ckpt under checkpoints/<experiment>/version_*/."""
    candidates = sorted(Path(root, experiment).glob("version_*/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def version_of(checkpoint: Path) -> int | None:
    """N for a checkpoint inside a version_N folder (so a resumed run logs into the same TensorBoard version)."""
    match = VERSION_DIR.match(checkpoint.parent.name)
    return int(match.group(1)) if match else None


def is_checkpoint_file(ckpt_path: Any) -> bool:
    """Whether a --ckpt_path value names a local file (not "last"/"best"/"hpc", a registry or a URL)."""
    return (isinstance(ckpt_path, (str, Path)) and str(ckpt_path) not in CKPT_ALIASES
            and not str(ckpt_path).startswith("registry") and "://" not in str(ckpt_path))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (memory-mapped: cheap even for large files), or a ConfigError naming the file."""
    if not Path(path).is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # zip/pickle errors of a truncated or foreign file; torch's text helps nobody here
        raise ConfigError(f"{path} is not a readable Lightning checkpoint: the file is incomplete (cut off while "
                          f"being written or copied) or not a checkpoint; pass a complete .ckpt file, e.g. "
                          f"--ckpt_path last") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path} is not a Lightning checkpoint (no state_dict; a plain weights file such as "
                          f"best_weights.pt loads with --model.net.init_args.weights where the model has one)")
    return checkpoint


def model_identity(model: Any) -> str | None:
    """What makes two models the same kind, for a model config or a checkpoint's hyperparameters: the injected
    network's class (`net.class_path`) where there is one, else the LightningModule's class."""
    if model is None:
        return None
    if hasattr(model, "as_dict"):
        model = model.as_dict()
    if not isinstance(model, Mapping):
        return None
    args = model["init_args"] if isinstance(model.get("init_args"), Mapping) else model
    net = args.get("net")
    if isinstance(net, Mapping) and net.get("class_path"):
        return net["class_path"]
    return model.get("class_path") or model.get("_class_path")


def checkpoint_model_class(checkpoint: dict[str, Any]) -> str | None:
    """The model a checkpoint was saved from (LightningCLI records its config in the hyperparameters)."""
    return model_identity(checkpoint.get("hyper_parameters") or {})


def refuse_checkpoint_of_another_model(ckpt_path: Any, model_config: Any) -> None:
    """LightningCLI replaces the configured model by the one stored in the checkpoint's hyperparameters, even
    when it is another kind (a moons MLP checkpoint would silently turn a digits CNN run into an MLP run).
    Refuse that, naming both; a checkpoint of the same kind keeps Lightning's behaviour."""
    if not is_checkpoint_file(ckpt_path):
        return
    saved = checkpoint_model_class(read_checkpoint(ckpt_path))
    wanted = model_identity(model_config)
    if saved and wanted and saved != wanted:
        raise ConfigError(f"checkpoint {ckpt_path} holds a {saved.rsplit('.', 1)[-1]} ({saved}), but this run's "
                          f"model is {wanted.rsplit('.', 1)[-1]} ({wanted}); pass a checkpoint of the same model "
                          f"or the config it was trained with")
