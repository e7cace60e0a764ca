"""Checkpoints: find one (the newest last.ckpt of an experiment, the best file of a run or best-model folder), read
one (with a clear error for a bad file), tell which model it holds, refuse one that does not fit, and rebuild the
model and data module it was trained with. Used by the CLI (fit/test/predict), classify and the study."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch

from lightning_lab.errors import CheckpointError, LabError, first_line
from lightning_lab.paths import BEST_MODEL_NAME, CHECKPOINT_ROOT, LAST_CKPT_NAME, VERSION_DIR

# --ckpt_path values that Lightning resolves itself (not files).
CKPT_ALIASES = ("last", "best", "hpc")
LAB_PACKAGE = "lightning_lab."
# LabCLI's model class: LightningCLI records `_class_path` only for classes chosen in subclass mode.
DEFAULT_MODEL = "lightning_lab.models.Classifier"
# The score in a best checkpoint's name (LabCLI's checkpoint.filename: epoch{epoch:03d}-acc{val/acc:.4f}).
_SCORE = re.compile(r"acc(\d+(?:\.\d+)?)")


def find_last_checkpoint(experiment: str, root: str = CHECKPOINT_ROOT, dirpath: str | None = None) -> Path | None:
    """The newest last.ckpt under checkpoints/<experiment>/version_*/, or in `dirpath` (a run's own
    `checkpoint.dirpath`, which holds its files without version folders)."""
    stem = Path(LAST_CKPT_NAME).stem
    folder, pattern = (Path(dirpath), f"{stem}*.ckpt") if dirpath else (Path(root, experiment), f"version_*/{stem}*.ckpt")
    candidates = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
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
    """A checkpoint's contents (memory-mapped: cheap even for large files), or a CheckpointError naming the file."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # zip/pickle errors of a truncated or foreign file; torch's text helps nobody here
        raise CheckpointError(f"{path} is not a readable Lightning checkpoint: the file is incomplete (cut off while "
                              f"being written or copied) or not a checkpoint; pass a complete .ckpt file") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict; a plain weights file such as "
                              f"best_weights.pt loads with --model.net.init_args.weights where the model has one)")
    return checkpoint


def recorded_best(folder: Path) -> Path | None:
    """The file the run's main ModelCheckpoint chose as best, as its state in the folder's last.ckpt records it
    (by its own monitor: the lowest val/loss where it watches that, not the highest accuracy in a file name)."""
    last = folder / LAST_CKPT_NAME
    if not last.is_file():
        return None
    try:
        states = read_checkpoint(last).get("callbacks") or {}
    except CheckpointError:
        return None
    for state in states.values():
        best = state.get("best_model_path") if isinstance(state, Mapping) else None
        if best and not Path(best).name.startswith(Path(LAST_CKPT_NAME).stem) and (folder / Path(best).name).is_file():
            return folder / Path(best).name  # the run may have recorded it relative to another working directory
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file meant by `path`: the file itself, a best-model folder's model.ckpt, or a run folder's
    best checkpoint: the one its last.ckpt records as best, else the highest-scoring `epoch...-acc<score>.ckpt`
    (last.ckpt only when there is no other)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / BEST_MODEL_NAME).is_file():
        return path / BEST_MODEL_NAME
    if (best := recorded_best(path)) is not None:
        return best
    last_stem = Path(LAST_CKPT_NAME).stem
    candidates = sorted(p for p in path.glob("*.ckpt") if p.is_file())
    scored = [(float(m.group(1)), p) for p in candidates if (m := _SCORE.search(p.stem))]
    if scored:
        return max(scored, key=lambda sp: (sp[0], sp[1].stat().st_mtime))[1]
    others = [p for p in candidates if not p.name.startswith(last_stem)]
    if len(others) == 1:
        return others[0]
    last = [p for p in candidates if p.name.startswith(last_stem)]
    if last and not others:
        print(f"note: {path} has no scored checkpoint (epoch...-acc....ckpt); using {last[-1].name}", file=sys.stderr)
        return last[-1]
    if others:
        raise CheckpointError(f"{path} holds several checkpoints without a score in their names "
                              f"({', '.join(p.name for p in others[:5])}): pass the file")
    inside = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    hint = f"; it has the folders {', '.join(inside[:8])}: pass one of them" if inside else ""
    raise CheckpointError(f"no checkpoint (.ckpt) in {path}{hint}")


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
        raise CheckpointError(f"checkpoint {ckpt_path} holds a {saved.rsplit('.', 1)[-1]} ({saved}), but this run's "
                          f"model is {wanted.rsplit('.', 1)[-1]} ({wanted}); pass a checkpoint of the same model "
                          f"or the config it was trained with")


def refuse_checkpoint_that_does_not_fit(ckpt_path: Any, model: L.LightningModule) -> None:
    """A checkpoint whose weights do not fit the instantiated model is refused before any training, naming the
    first mismatching tensor (instead of a state_dict traceback after data preparation)."""
    if not is_checkpoint_file(ckpt_path):
        return
    checkpoint = read_checkpoint(ckpt_path)
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"{k} is missing" for k in wanted if k not in saved]
    problems += [f"{k} is not in the model" for k in saved if k not in wanted]
    problems += [f"{k} has shape {list(saved[k])} but the model expects {list(wanted[k])}"
                 for k in wanted if k in saved and saved[k] != wanted[k]]
    if problems:
        source = checkpoint_model_class(checkpoint) or "another model"
        net = getattr(model, "net", model)
        raise CheckpointError(f"checkpoint {ckpt_path} (saved from {source}) does not fit this run's "
                              f"{type(net).__name__}: {problems[0]}"
                              + (f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""))


# -- rebuilding what a checkpoint was trained with ----------------------------------------------------------
def _lab_class(class_path: Any, base: type, path: Path, what: str) -> type:
    """Import a class named in a checkpoint, only from this package (a checkpoint must not choose the code)."""
    if not isinstance(class_path, str) or not class_path.startswith(LAB_PACKAGE) or "." not in class_path:
        found = f"it names {class_path}" if class_path else f"it records no {what} class"
        raise CheckpointError(f"{path} is not a lightning-lab checkpoint ({found}); train one with "
                              f"`python -m lightning_lab fit --config configs/<dataset>.yaml`")
    module_name, name = class_path.rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{path} was saved from {class_path}, which this version of lightning-lab does not "
                              f"have ({first_line(err)})") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{path}: {class_path} is not a {base.__name__}")
    return cls


def _without_pretrained_download(hparams: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint holds every weight: rebuild a net trained from pretrained weights (ResNet-18's
    `weights: IMAGENET1K_V1` or a file) without them, so no download and no weights file is needed."""
    net = hparams.get("net")
    init_args = net.get("init_args") if isinstance(net, dict) else None
    if not isinstance(init_args, dict) or init_args.get("weights") in (None, "none"):
        return {}
    return {"net": {**net, "init_args": {**init_args, "weights": "none"}}}


def load_model_and_data(path: str | Path, batch_size: int | None = None
                        ) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The trained model (on the CPU) and its data module (not set up: no dataset files needed), both rebuilt from
    the hyperparameters LightningCLI recorded in the checkpoint; `batch_size` replaces the data module's."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    model_hparams = checkpoint.get("hyper_parameters") or {}
    data_hparams = checkpoint.get(L.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY) or {}
    model_path = model_hparams.get("_class_path") or (DEFAULT_MODEL if "_instantiator" in model_hparams else None)
    model_cls = _lab_class(model_path, L.LightningModule, path, "model")
    data_cls = _lab_class(data_hparams.get("_class_path"), L.LightningDataModule, path, "data module")
    del checkpoint
    try:
        model = model_cls.load_from_checkpoint(path, map_location="cpu", **_without_pretrained_download(model_hparams))
    except Exception as err:  # jsonargparse/state-dict errors of a checkpoint from another version
        raise CheckpointError(f"could not rebuild the model of {path} ({first_line(err)})") from err
    overrides = {"batch_size": batch_size} if batch_size is not None else {}
    try:
        datamodule = data_cls.load_from_checkpoint(path, **overrides)
    except LabError:
        raise
    except Exception as err:
        raise CheckpointError(f"could not rebuild the data module of {path} ({first_line(err)})") from err
    return model, datamodule
