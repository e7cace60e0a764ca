"""A Lightning prediction writer: top-k class names per image as a CSV, a terminal table and a picture.

Used by `python -m lightning_lab classify` and, registered in LabCLI, by `python -m lightning_lab predict`.
It reads `Classifier.predict_step`'s `{"probs": (B, C), "index": (B,)}`; the index points into the predict
dataset's `.files` (`UserImages`), and the class names come from the data module's `classes`.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_lab.data.base import class_names
from lightning_lab.errors import ConfigError

CSV_COLUMNS = ("path", "prediction", "probability", "top_k")
MAX_TABLE_ROWS = 200
MAX_GRID_IMAGES = 64
LATE_FAILURE = "could not be read while classifying (changed since it was checked?)"


def format_top_k(names: Sequence[str], probs: Sequence[float]) -> str:
    """`dog:0.9134;cat:0.0866`: the k most likely classes, most likely first."""
    return ";".join(f"{name}:{p:.4f}" for name, p in zip(names, probs))


class PredictionWriter(BasePredictionWriter):
    """Write `out` (CSV: path, prediction, probability, top_k), print a table of the predictions and the skipped
    files, and, with `grid`, save a picture of the images titled with their predicted class and probability.

    Args:
        out: the CSV file.
        top_k: how many classes per image (the CSV's top_k column and the table), at most the number of classes.
        grid: an image file (e.g. predictions.png) showing each image with its prediction; None: no picture.
        write_interval: "batch": CSV rows are written as each batch finishes (a one-process run that stops
            halfway keeps them); "epoch": everything at the end, from the predictions Lightning returns.
            Under DDP the ranks' rows are gathered and global rank 0 writes the files.
    """

    def __init__(self, out: str = "predictions.csv", top_k: int = 3, grid: str | None = None,
                 write_interval: Literal["batch", "epoch"] = "batch") -> None:
        if write_interval not in ("batch", "epoch"):
            raise ConfigError(f"write_interval must be 'batch' or 'epoch', got {write_interval!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be an integer >= 1, got {top_k!r}")
        super().__init__(write_interval)
        self.out = out
        self.top_k = top_k
        self.grid = grid
        self.rows: list[dict[str, Any]] = []
        self._csv: TextIO | None = None
        self._writer: Any = None

    # -- Lightning hooks --------------------------------------------------------------------------------
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []
        self._close()

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        rows = self._rows_of(trainer, prediction, batch_indices)
        self.rows += rows
        if trainer.world_size == 1:  # under DDP the ranks' rows are merged at the end
            self._stream(rows)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        if predictions and isinstance(predictions[0], list):  # several dataloaders: one list each
            predictions, batch_indices = predictions[0], batch_indices[0] if batch_indices else []
        for i, prediction in enumerate(predictions):
            indices = batch_indices[i] if batch_indices and i < len(batch_indices) else None
            self.rows += self._rows_of(trainer, prediction, indices)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_predict_epoch_end(trainer, pl_module)  # write_on_epoch_end in "epoch" mode
        rows = self._gather(trainer, self.rows)
        if not trainer.is_global_zero:
            return
        rows.sort(key=lambda row: row["index"])
        if self._csv is None or trainer.world_size > 1:
            self._close()
            self._stream(rows)
        self._close()
        dataset = self._dataset(trainer)
        skipped = list(getattr(dataset, "skipped", []))
        files = getattr(dataset, "files", None)
        if files is not None:  # dropped by UserImages.collate after passing the up-front check
            done = {row["index"] for row in rows}
            skipped += [(str(f), LATE_FAILURE) for i, f in enumerate(files) if i not in done]
        print(prediction_table(rows, self.top_k))
        if skipped:
            total = len(rows) + len(skipped)
            print(f"\nSkipped {len(skipped)} of {total} files:")
            for path, reason in skipped:
                print(f"  {path}: {reason}")
        print(f"\nWrote {self.out} ({len(rows)} prediction{'' if len(rows) == 1 else 's'})")
        if self.grid and rows:
            if files is None:
                print("No picture written: the predict data are not image files (use predict_path)")
            else:
                prediction_grid(rows).savefig(self.grid, dpi=100, bbox_inches="tight")
                print(f"Wrote {self.grid}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    # -- rows -------------------------------------------------------------------------------------------
    def _rows_of(self, trainer: L.Trainer, prediction: Any, batch_indices: Sequence[int] | None) -> list[dict]:
        """One row per image: index, path, the top-k class names and probabilities."""
        if not isinstance(prediction, dict) or "probs" not in prediction:
            raise ConfigError("PredictionWriter needs a predict_step that returns {'probs': (B, C), 'index': (B,)} "
                              f"(lightning_lab.models.Classifier does); got {type(prediction).__name__}")
        probs = prediction["probs"].detach().float().cpu()
        dataset = self._dataset(trainer)
        files = getattr(dataset, "files", None)
        if files is not None:  # UserImages: the index travels with the batch (failed samples are dropped)
            indices = [int(i) for i in prediction["index"]]
        else:  # e.g. the test split, whose batch[1] is the label: the sampler's indices
            indices = list(batch_indices or ())
            if len(indices) != len(probs):  # a loader whose sampler Lightning cannot read: refused, not guessed
                raise ConfigError(f"{type(trainer.predict_dataloaders).__name__} gave no sample indices for the "
                                  f"predictions; predict through a DataLoader (the data modules' predict_dataloader)")
        names = class_names(trainer.datamodule, probs.shape[1])
        top_p, top_i = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        rows = []
        for index, p, i in zip(indices, top_p.tolist(), top_i.tolist()):
            rows.append({"index": index, "path": str(files[index]) if files is not None else str(index),
                         "classes": [names[j] for j in i], "probs": p})
        return rows

    @staticmethod
    def _dataset(trainer: L.Trainer) -> Any:
        loaders = trainer.predict_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        return getattr(loaders, "dataset", None)

    @staticmethod
    def _gather(trainer: L.Trainer, rows: list[dict]) -> list[dict]:
        """Every rank's rows on every rank (their numbers differ, so not trainer.strategy.all_gather)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return list(rows)
        gathered: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, rows)
        return [row for part in gathered for row in part]

    # -- CSV --------------------------------------------------------------------------------------------
    def _stream(self, rows: list[dict]) -> None:
        if self._csv is None:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            self._csv = open(self.out, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._csv)
            self._writer.writerow(CSV_COLUMNS)
        for row in rows:
            self._writer.writerow(csv_row(row))
        self._csv.flush()

    def _close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        self._csv = self._writer = None


def csv_row(row: dict) -> list[str]:
    return [row["path"], row["classes"][0], f"{row['probs'][0]:.4f}", format_top_k(row["classes"], row["probs"])]


def prediction_table(rows: list[dict], top_k: int) -> str:
    """file | prediction | probability | the next top_k - 1 classes, as aligned text."""
    header = ["file", "prediction", "probability"] + (["next classes"] if top_k > 1 else [])
    lines = [[_shorten(row["path"], 60), row["classes"][0], f"{row['probs'][0]:.4f}"]
             + ([", ".join(f"{c} {p:.4f}" for c, p in zip(row["classes"][1:], row["probs"][1:]))]
                if top_k > 1 else []) for row in rows[:MAX_TABLE_ROWS]]
    widths = [max(len(cells[c]) for cells in [header] + lines) for c in range(len(header))]
    out = io.StringIO()
    for cells in [header, ["-" * w for w in widths]] + lines:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip() + "\n")
    if len(rows) > MAX_TABLE_ROWS:
        out.write(f"... and {len(rows) - MAX_TABLE_ROWS} more (all in the CSV)\n")
    return out.getvalue().rstrip("\n")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def prediction_grid(rows: list[dict], max_images: int = MAX_GRID_IMAGES) -> Any:
    """A matplotlib Figure: each image (as the user's file shows it) titled with its class and probability."""
    from matplotlib.figure import Figure

    from lightning_lab.data.decode import open_image
    from lightning_lab.data.images import as_shown

    shown = rows[:max_images]
    cols = min(8, len(shown))
    nrows = math.ceil(len(shown) / cols)
    figure = Figure(figsize=(1.8 * cols, 2.0 * nrows))
    for k, row in enumerate(shown):
        axis = figure.add_subplot(nrows, cols, k + 1)
        try:
            picture = as_shown(open_image(row["path"]))  # upright, as classify read it
            picture.thumbnail((160, 160))
            axis.imshow(picture)
        except Exception:  # gone or changed since it was classified: keep the title, leave the square empty
            pass
        axis.set_title(f"{row['classes'][0]} {row['probs'][0]:.2f}\n{_shorten(os.path.basename(row['path']), 22)}",
                       fontsize=8)
        axis.axis("off")
    if len(rows) > len(shown):
        figure.suptitle(f"first {len(shown)} of {len(rows)} images (all in the CSV)", fontsize=9)
    figure.tight_layout()
    return figure
