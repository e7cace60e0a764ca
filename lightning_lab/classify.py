"""`python -m lightning_lab classify CHECKPOINT PATH...`: classify your own image files with a trained model.

A front end over `Trainer.predict` and `PredictionWriter`: the model, the data module that trained it (its class
names and evaluation preprocessing) and the weights all come from the checkpoint (`lightning_lab.checkpoint`);
the writer prints the table and writes the CSV and the optional picture.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_lab.callbacks.prediction_writer import PredictionWriter
from lightning_lab.checkpoint import load_model_and_data, resolve_checkpoint
from lightning_lab.data.decode import open_image
from lightning_lab.data.user_images import expand_paths
from lightning_lab.errors import CheckpointError, ConfigError, first_line
from lightning_lab.quiet import hide_library_deprecations, hide_lightning_tips, quiet_lightning


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
    parser.add_argument("--invert", action="store_true",
                        help="invert the images first: a dark drawing on a light background for a model trained on "
                             "light strokes on a dark one (the digits and MNIST configs)")
    parser.add_argument("--accelerator", default="auto",
                        help="auto (a GPU when there is one), cpu, gpu, mps (default auto)")
    return parser


def classify(checkpoint: str | Path, paths: Sequence[str], top_k: int = 3, out: str = "predictions.csv",
             grid: str | None = None, batch_size: int | None = None, accelerator: str = "auto",
             invert: bool = False) -> PredictionWriter:
    """Classify the image files under `paths`; returns the writer (its `.rows` hold the predictions)."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    writer = PredictionWriter(out=out, top_k=top_k, grid=grid)  # checks top_k before anything is loaded
    expand_paths(paths)  # a path that does not exist fails before the model is loaded
    path = resolve_checkpoint(checkpoint)
    model, datamodule = load_model_and_data(path, batch_size)
    if not callable(getattr(datamodule, "image_to_tensor", None)) or not hasattr(datamodule, "predict_path"):
        raise CheckpointError(f"{path} was trained on {type(datamodule).__name__}, which does not take image files "
                              f"(no image_to_tensor/predict_path)")
    datamodule.predict_path = list(paths)
    datamodule.predict_invert = invert
    names = getattr(datamodule, "classes", None)
    print(f"Model: {path} ({type(model).__name__} trained on {type(datamodule).__name__}"
          + (f", classes: {', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''})" if names else ")"))
    hide_lightning_tips()
    hide_library_deprecations()
    with quiet_lightning():
        try:
            trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                                enable_model_summary=False, enable_progress_bar=sys.stderr.isatty(),
                                callbacks=[writer])
        except Exception as err:  # MisconfigurationException for an accelerator this machine lacks
            raise ConfigError(f"--accelerator {accelerator}: {first_line(err)}") from err
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    images = getattr(datamodule, "predict_images", None)
    note = None if invert or images is None else light_background_note(datamodule, images.files)
    if note:
        print(note)
    return writer


def light_background_note(datamodule: Any, files: Sequence[Path], sample: int = 64) -> str | None:
    """A hint to add --invert when a model trained on light strokes on a dark background (one channel whose
    dataset mean is below one half: MNIST, the digits) was given mostly images with a light border, as a drawing
    on paper has (it then sees a dark stroke on light ground, unlike anything it was trained on)."""
    mean = tuple(getattr(datamodule, "mean", None) or ())
    if len(mean) != 1 or mean[0] >= 0.5 or not files:
        return None
    looked = list(files)[:sample]
    light = 0
    for file in looked:
        try:
            light += border_mean(datamodule.image_to_tensor(open_image(file))) > 127
        except Exception:  # changed since it was classified: it does not count
            pass
    if 2 * light <= len(looked):
        return None
    of = f"the first {len(looked)}" if len(files) > len(looked) else str(len(looked))
    return (f"note: {light} of {of} images have a light border, but {type(datamodule).__name__} images "
            "are light strokes on a dark background: for dark drawings on light paper, run again with --invert")


def border_mean(image: torch.Tensor) -> float:
    """The mean value of the outermost pixels of a (C, H, W) image."""
    edges = (image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1])
    return float(torch.cat([edge.reshape(-1) for edge in edges]).float().mean())


def main(argv: Sequence[str]) -> int:
    """`argv`: the arguments after `classify`. Returns the exit status; bad input raises a LabError, which
    `python -m lightning_lab` prints as one `error:` line (exit 2)."""
    args = build_parser().parse_args(list(argv))
    classify(args.checkpoint, args.paths, top_k=args.top_k, out=args.out, grid=args.grid,
             batch_size=args.batch_size, accelerator=args.accelerator, invert=args.invert)
    return 0
