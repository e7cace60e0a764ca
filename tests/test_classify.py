"""`python -m lightning_lab classify`: a user's own image files through a trained model's own preprocessing.

The first tests need no training: UserImages (paths, formats, bad files) and PredictionWriter (CSV, table,
picture) with a tiny data module and model that follow the lab's shapes. The end-to-end tests train briefly with
the real configs, then classify files written in other sizes, modes and formats than the training data.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2.functional import pil_to_tensor

from lightning_lab.classify import CheckpointError, main as classify_main, resolve_checkpoint
from lightning_lab.data.user_images import ImageInputError, UserImages
from lightning_lab.errors import LabError
from lightning_lab.prediction_writer import CSV_COLUMNS, PredictionWriter

REPO = Path(__file__).resolve().parent.parent


# -- helpers --------------------------------------------------------------------------------------------------
def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def grey(value: int, size: int = 28, mode: str = "L") -> Image.Image:
    return Image.new("L", (size, size), value).convert(mode)


def truncated_jpeg(path: Path) -> Path:
    buffer = path.with_suffix(".full.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, quality=95)
    data = buffer.read_bytes()
    buffer.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def mixed_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """Good images in several formats/modes/sizes (one in a sub-folder) and bad files: (good, bad)."""
    good = [save(grey(10), root / "dark.png"),                                    # 28x28 grayscale PNG
            save(grey(245, 64, "RGB"), root / "bright.jpg", quality=95),          # 64x64 RGB JPEG
            save(grey(230, 40, "RGBA"), root / "sub" / "bright_rgba.png"),        # RGBA in a sub-folder
            save(grey(20, 33, "P"), root / "sub" / "dark_palette.bmp"),           # palette BMP
            save(grey(240, 3000, "RGB"), root / "big_bright.webp", quality=80)]   # large WebP
    (root / "notes.txt").write_text("not an image\n")
    bad = [root / "notes.txt", truncated_jpeg(root / "truncated.jpg"), root / "empty.png"]
    (root / "empty.png").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: not looked at
    return good, bad


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class TinyImages(L.LightningDataModule):
    """The lab's data-module shape in miniature: uint8 8x8 grayscale on the CPU, scaling on the device."""

    def __init__(self, batch_size: int = 2, num_workers: int = 0, predict_path: str | None = None) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.predict_path = batch_size, num_workers, predict_path
        self.classes = ["dark", "bright"]

    def image_to_tensor(self, image: Image.Image) -> torch.Tensor:
        return pil_to_tensor(image.convert("L").resize((8, 8)))

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, index = batch
        return x.float() / 255, index

    def predict_dataloader(self) -> DataLoader:
        images = UserImages(self.predict_path, self.image_to_tensor)
        return DataLoader(images, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=UserImages.collate)


class Brightness(L.LightningModule):
    """P(bright) = mean pixel value: predictions that can be checked by eye."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def predict_step(self, batch, batch_idx):
        x, index = batch
        bright = x.mean(dim=(1, 2, 3))
        return {"probs": torch.stack([1 - bright, bright], dim=1), "index": index}


def tiny_predict(paths, writer: PredictionWriter, **data_kwargs) -> TinyImages:
    data = TinyImages(predict_path=paths, **data_kwargs)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[writer])
    trainer.predict(Brightness(), datamodule=data, return_predictions=writer.interval.value == "epoch")
    return data


# -- UserImages -----------------------------------------------------------------------------------------------
def test_user_images_reads_every_format_and_lists_bad_files(tmp_path: Path) -> None:
    good, bad = mixed_folder(tmp_path / "photos")
    images = UserImages(str(tmp_path / "photos"), lambda im: pil_to_tensor(im.convert("L").resize((8, 8))))
    assert sorted(images.files) == sorted(good)
    reasons = dict(images.skipped)
    assert set(reasons) == {str(p) for p in bad}
    assert reasons[str(tmp_path / "photos" / "notes.txt")] == "not an image"
    assert reasons[str(tmp_path / "photos" / "empty.png")] == "empty file"
    assert reasons[str(tmp_path / "photos" / "truncated.jpg")].startswith("truncated or corrupt image")
    x, index = UserImages.collate([images[i] for i in range(len(images))])
    assert x.dtype == torch.uint8 and x.shape == (len(good), 1, 8, 8)
    assert index.dtype == torch.int64 and index.tolist() == list(range(len(good)))


def test_user_images_files_globs_and_missing_paths(tmp_path: Path) -> None:
    good, _ = mixed_folder(tmp_path)
    to_tensor = lambda im: pil_to_tensor(im.convert("L"))  # noqa: E731
    images = UserImages([str(good[0]), str(tmp_path / "sub" / "*"), str(good[0])], to_tensor)
    assert images.files == [good[0], good[2], good[3]]  # given order, no repeats
    assert UserImages(str(tmp_path / "**" / "*.png"), to_tensor).files == [good[0], good[2]]
    with pytest.raises(ImageInputError, match="does not exist"):
        UserImages([str(good[0]), str(tmp_path / "nope")], to_tensor)
    with pytest.raises(ImageInputError, match="no file matches"):
        UserImages(str(tmp_path / "*.gif"), to_tensor)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("a")
    with pytest.raises(ImageInputError, match="none a readable image"):
        UserImages(str(tmp_path / "texts"), to_tensor)


def test_user_images_drops_a_file_that_breaks_after_the_check(tmp_path: Path) -> None:
    good, _ = mixed_folder(tmp_path)
    images = UserImages(str(tmp_path), lambda im: pil_to_tensor(im.convert("L").resize((8, 8))))
    images.files[1].write_text("overwritten")
    x, index = UserImages.collate([images[0], images[1]])
    assert index.tolist() == [0] and x.shape == (1, 1, 8, 8)
    x, index = UserImages.collate([images[1]])
    assert x.shape == (0, 1, 8, 8) and index.numel() == 0


# -- PredictionWriter ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("write_interval", ["batch", "epoch"])
def test_writer_csv_table_skipped_and_picture(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              write_interval: str) -> None:
    good, bad = mixed_folder(tmp_path / "photos")
    out, grid = tmp_path / "out" / "predictions.csv", tmp_path / "grid.png"
    writer = PredictionWriter(out=str(out), top_k=2, grid=str(grid), write_interval=write_interval)
    tiny_predict(str(tmp_path / "photos"), writer)
    rows = read_csv(out)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["path"] for r in rows] == [str(p) for p in sorted(good)]
    expected = {p.name: ("bright" if "bright" in p.name else "dark") for p in good}
    for row in rows:
        assert row["prediction"] == expected[Path(row["path"]).name]
        first, second = row["top_k"].split(";")
        assert first == f"{row['prediction']}:{row['probability']}" and float(row["probability"]) >= 0.5
        assert second.split(":")[0] != row["prediction"]
    printed = capsys.readouterr().out
    assert f"Skipped {len(bad)} of {len(good) + len(bad)} files" in printed
    assert "notes.txt: not an image" in printed and "truncated.jpg: truncated" in printed
    assert "prediction" in printed and "next classes" in printed
    assert grid.stat().st_size > 1000 and Image.open(grid).size[0] > 100


def test_writer_reports_files_dropped_in_worker_processes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = mixed_folder(tmp_path / "photos")
    real_init = UserImages.__init__

    def break_one_after_the_check(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.files[0].write_text("broken after the check")

    monkeypatch.setattr(UserImages, "__init__", break_one_after_the_check)
    writer = PredictionWriter(out=str(tmp_path / "p.csv"))
    tiny_predict(str(tmp_path / "photos"), writer, num_workers=2)
    assert len(read_csv(tmp_path / "p.csv")) == len(good) - 1
    printed = capsys.readouterr().out
    assert f"Skipped {len(bad) + 1} of {len(good) + len(bad)} files" in printed
    assert "could not be read while classifying" in printed


def test_writer_refuses_a_bad_top_k() -> None:
    with pytest.raises(LabError, match="top_k"):
        PredictionWriter(top_k=0)


# -- CHECKPOINT argument ---------------------------------------------------------------------------------------
def test_checkpoint_argument_file_best_folder_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "checkpoints" / "digits_cnn" / "version_0"
    run.mkdir(parents=True)
    for name in ("last.ckpt", "epoch003-acc0.9100.ckpt", "epoch007-acc0.9650.ckpt", "epoch005-acc0.9400.ckpt"):
        (run / name).write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "epoch007-acc0.9650.ckpt"
    assert resolve_checkpoint(run / "last.ckpt") == run / "last.ckpt"
    best = tmp_path / "checkpoints" / "best" / "digits" / "cnn"
    best.mkdir(parents=True)
    (best / "model.ckpt").write_bytes(b"x")
    assert resolve_checkpoint(best) == best / "model.ckpt"
    with pytest.raises(CheckpointError, match="pass one of them"):
        resolve_checkpoint(tmp_path / "checkpoints" / "best" / "digits")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope.ckpt")


def test_not_a_lab_checkpoint_is_one_error(tmp_path: Path) -> None:
    mixed_folder(tmp_path / "photos")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable Lightning checkpoint"):
        classify_main([str(tmp_path / "text.ckpt"), str(tmp_path / "photos")])
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "torchvision.models.ResNet"}},
               tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a lightning-lab checkpoint"):
        classify_main([str(tmp_path / "foreign.ckpt"), str(tmp_path / "photos")])
    torch.save({"state_dict": {}}, tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointError, match="records no model class"):
        classify_main([str(tmp_path / "bare.ckpt"), str(tmp_path / "photos")])
