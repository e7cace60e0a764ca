"""`python -m lightning_lab classify CHECKPOINT PATH...`: classify your own image files with a trained model.

Everything comes from the checkpoint: the model (rebuilt from the hyperparameters LightningCLI recorded), the
data module that trained it (its class names and evaluation preprocessing: `image_to_tensor` on the CPU,
`on_after_batch_transfer` on the device) and the weights. The files go through `Trainer.predict` in batches,
and `PredictionWriter` writes the CSV, the table and the optional picture.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_lab.errors import ConfigError, LabError
from lightning_lab.prediction_writer import PredictionWriter

BEST_CHECKPOINT_NAME = "model.ckpt"  # in checkpoints/best/<dataset>/<kind>/ (lightning_lab.experiments.best)
LAB_PACKAGE = "lightning_lab."
# LabCLI's model class: LightningCLI records `_class_path` only for classes chosen in subclass mode.
DEFAULT_MODEL = "lightning_lab.models.Classifier"
_SCORE = re.compile(r"acc(\d+(?:\.\d+)?)")


class CheckpointError(LabError, ValueError):
    """The CHECKPOINT argument is missing, ambiguous or not a lab checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab classify",
        description="Classify image files (any size and format PIL reads) with a trained model: a table on the "
                    "terminal, a CSV and optionally a picture. The model, its preprocessing and the class names "
                    "all come from the checkpoint.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a .ckpt file, a best-model folder (checkpoints/best/<dataset>/<kind>/) or a run's "
                             "checkpoint folder (checkpoints/<experiment>/version_N/: its best checkpoint)")
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="image files, folders (searched recursively) or globs such as 'photos/*.jpg'")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--out", default="predictions.csv", help="CSV file to write (default predictions.csv)")
    parser.add_argument("--grid", default=None, metavar="PICTURE",
                        help="also save a picture of the images with their predictions, e.g. predictions.png")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: the batch size the model was trained with)")
    parser.add_argument("--accelerator", default="auto",
                        help="auto (a GPU when there is one), cpu, gpu, mps (default auto)")
    return parser


# -- CHECKPOINT -------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file meant by `path`: the file itself, a best-model folder's model.ckpt, or the
    highest-scoring `epoch...-acc<score>.ckpt` of a run folder (last.ckpt only when there is no other)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / BEST_CHECKPOINT_NAME).is_file():
        return path / BEST_CHECKPOINT_NAME
    candidates = sorted(p for p in path.glob("*.ckpt") if p.is_file())
    scored = [(float(m.group(1)), p) for p in candidates if (m := _SCORE.search(p.stem))]
    if scored:
        return max(scored, key=lambda sp: (sp[0], sp[1].stat().st_mtime))[1]
    others = [p for p in candidates if not p.name.startswith("last")]
    if len(others) == 1:
        return others[0]
    last = [p for p in candidates if p.name.startswith("last")]
    if last and not others:
        print(f"note: {path} has no scored checkpoint (epoch...-acc....ckpt); using {last[-1].name}", file=sys.stderr)
        return last[-1]
    inside = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    hint = f"; it has the folders {', '.join(inside[:8])}: pass one of them" if inside else ""
    if others:
        raise CheckpointError(f"{path} holds several checkpoints without a score in their names "
                              f"({', '.join(p.name for p in others[:5])}): pass the file")
    raise CheckpointError(f"no checkpoint (.ckpt) in {path}{hint}")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, or a CheckpointError for a file that is not a Lightning checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle/zip errors of a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable Lightning checkpoint ({_first_line(err)})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


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
                              f"have ({_first_line(err)})") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{path}: {class_path} is not a {base.__name__}")
    return cls


def load_model_and_data(path: Path, batch_size: int | None = None) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The trained model and its data module (not set up: no dataset files needed), both from the checkpoint."""
    checkpoint = read_checkpoint(path)
    model_hparams = checkpoint.get("hyper_parameters") or {}
    data_hparams = checkpoint.get(L.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY) or {}
    model_path = model_hparams.get("_class_path") or (DEFAULT_MODEL if "_instantiator" in model_hparams else None)
    model_cls = _lab_class(model_path, L.LightningModule, path, "model")
    data_cls = _lab_class(data_hparams.get("_class_path"), L.LightningDataModule, path, "data module")
    del checkpoint
    try:
        model = model_cls.load_from_checkpoint(path, map_location="cpu", **_no_pretrained_download(model_hparams))
    except Exception as err:  # jsonargparse/state-dict errors of a checkpoint from another version
        raise CheckpointError(f"could not rebuild the model of {path} ({_first_line(err)})") from err
    overrides = {"batch_size": batch_size} if batch_size is not None else {}
    try:
        datamodule = data_cls.load_from_checkpoint(path, **overrides)
    except LabError:
        raise
    except Exception as err:
        raise CheckpointError(f"could not rebuild the data module of {path} ({_first_line(err)})") from err
    if not callable(getattr(datamodule, "image_to_tensor", None)) or not hasattr(datamodule, "predict_path"):
        raise CheckpointError(f"{path} was trained on {data_cls.__name__}, which does not take image files "
                              f"(no image_to_tensor/predict_path)")
    return model, datamodule


def _no_pretrained_download(hparams: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint holds every weight: rebuild a net trained from pretrained weights (ResNet-18's
    `weights: IMAGENET1K_V1` or a file) without them, so classifying needs no download and no weights file."""
    net = hparams.get("net")
    init_args = net.get("init_args") if isinstance(net, dict) else None
    if not isinstance(init_args, dict) or init_args.get("weights") in (None, "none"):
        return {}
    return {"net": {**net, "init_args": {**init_args, "weights": "none"}}}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's "GPU available"/"Trainer will use" notes: the user asked for predictions."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def classify(checkpoint: str | Path, paths: Sequence[str], top_k: int = 3, out: str = "predictions.csv",
             grid: str | None = None, batch_size: int | None = None, accelerator: str = "auto") -> PredictionWriter:
    """Classify the image files under `paths`; returns the writer (its `.rows` hold the predictions)."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    writer = PredictionWriter(out=out, top_k=top_k, grid=grid)  # checks top_k before anything is loaded
    path = resolve_checkpoint(checkpoint)
    model, datamodule = load_model_and_data(path, batch_size)
    datamodule.predict_path = list(paths)
    names = getattr(datamodule, "classes", None)
    print(f"Model: {path} ({type(model).__name__} trained on {type(datamodule).__name__}"
          + (f", classes: {', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''})" if names else ")"))
    with _quiet_lightning():
        try:
            trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                                enable_model_summary=False, enable_progress_bar=sys.stderr.isatty(),
                                callbacks=[writer])
        except Exception as err:  # MisconfigurationException for an accelerator this machine lacks
            raise ConfigError(f"--accelerator {accelerator}: {_first_line(err)}") from err
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    return writer


def main(argv: Sequence[str]) -> int:
    """`argv`: the arguments after `classify` (a leading "classify" is ignored). Returns the exit status;
    bad input raises a LabError (`python -m lightning_lab` prints it as one `error:` line, exit 2)."""
    argv = list(argv)
    if argv and argv[0] == "classify":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    classify(args.checkpoint, args.paths, top_k=args.top_k, out=args.out, grid=args.grid,
             batch_size=args.batch_size, accelerator=args.accelerator)
    return 0


if __name__ == "__main__":  # python -m lightning_lab.classify (python -m lightning_lab classify is the same)
    try:
        sys.exit(main(sys.argv[1:]))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
