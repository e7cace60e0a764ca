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
from PIL import Image, ImageOps
from torch.utils.data import DataLoader
from torchvision.transforms.v2.functional import pil_to_tensor

from conftest import REPO, DigitsRun, quick_args
from lightning_lab.callbacks.prediction_writer import CSV_COLUMNS, PredictionWriter
from lightning_lab.checkpoint import load_model_and_data, resolve_checkpoint
from lightning_lab.classify import main as classify_main
from lightning_lab.data.user_images import ImageInputError, UserImages
from lightning_lab.errors import CheckpointError, LabError


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
    with pytest.raises(ImageInputError, match="nope does not exist"):  # before the checkpoint is even looked at
        classify_main([str(tmp_path / "no_such.ckpt"), str(tmp_path / "nope")])
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


def test_the_picture_shows_each_image_as_a_viewer_does(tmp_path: Path) -> None:
    """A dark stroke on a transparent background on white, a [0, 1] float image and a 16-bit one scaled."""
    from lightning_lab.callbacks.prediction_writer import prediction_grid

    stroke = np.zeros((16, 16, 4), dtype=np.uint8)
    stroke[4:12, 8, 3] = 255  # opaque black column; the rest transparent
    Image.fromarray(stroke, mode="RGBA").save(tmp_path / "stroke.png")
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tiff")
    Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(tmp_path / "deep.png")
    rows = [{"path": str(tmp_path / name), "classes": ["a"], "probs": [1.0]}
            for name in ("stroke.png", "float.tiff", "deep.png")]
    shown = [np.asarray(axis.images[0].get_array()) for axis in prediction_grid(rows).axes]
    assert shown[0][0, 0].tolist() == [255, 255, 255] and shown[0][4, 8].tolist() == [0, 0, 0]
    for ramp_shown in shown[1:]:
        assert ramp_shown[0, 0, 0] == 0 and ramp_shown[-1, -1, 0] == 255
        assert np.all(np.diff(ramp_shown[..., 0].astype(int).ravel()) >= 0)  # a ramp, not clipped black/white


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


def test_writer_without_files_names_rows_by_sample_index(tmp_path: Path) -> None:
    """`predict` without predict_path runs over the test split, whose batches are (x, label): rows are the
    samples' indices, from the sampler, not from batch[1]."""

    class TestSplit(TinyImages):
        def predict_dataloader(self) -> DataLoader:
            x = torch.stack([torch.full((1, 8, 8), v, dtype=torch.uint8) for v in (0, 255, 250, 5, 240)])
            return DataLoader(torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 1, 0, 1])), batch_size=2)

    writer = PredictionWriter(out=str(tmp_path / "p.csv"), grid=str(tmp_path / "g.png"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(Brightness(), datamodule=TestSplit(), return_predictions=False)
    rows = read_csv(tmp_path / "p.csv")
    assert [(r["path"], r["prediction"]) for r in rows] == [("0", "dark"), ("1", "bright"), ("2", "bright"),
                                                            ("3", "dark"), ("4", "bright")]
    assert not (tmp_path / "g.png").exists()


DDP_SCRIPT = """
import sys
import lightning as L
from lightning_lab.callbacks.prediction_writer import PredictionWriter
from test_classify import Brightness, TinyImages

writer = PredictionWriter(out=sys.argv[2], write_interval=sys.argv[3])
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=[writer])
trainer.predict(Brightness(), datamodule=TinyImages(predict_path=sys.argv[1]), return_predictions=False)
"""


@pytest.mark.slow
def test_writer_under_ddp_writes_every_file_once(tmp_path: Path) -> None:
    """Two CPU processes each classify part of the files; global rank 0 writes them all, in file order."""
    good, _ = mixed_folder(tmp_path / "photos")
    script = tmp_path / "ddp_predict.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "photos"), str(tmp_path / "p.csv"), "batch"],
                            cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in read_csv(tmp_path / "p.csv")] == [str(p) for p in sorted(good)]
    assert result.stdout.count("Skipped 3 of 8 files") == 1  # printed by rank 0 only


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


def test_a_run_folder_gives_the_checkpoint_the_run_chose(tmp_path: Path) -> None:
    """With the checkpoint on val/loss and two kept files, the best is the lower loss, not the higher accuracy
    in the file names: last.ckpt records which one the run's ModelCheckpoint chose."""
    run = tmp_path / "version_0"
    run.mkdir()
    for name in ("epoch003-acc0.9700.ckpt", "epoch007-acc0.9650.ckpt"):
        (run / name).write_bytes(b"x")
    state = {"best_model_path": "elsewhere/version_0/epoch007-acc0.9650.ckpt", "dirpath": "elsewhere/version_0"}
    torch.save({"state_dict": {}, "callbacks": {"LabCheckpoint{'monitor': 'val/loss'}": state,
                                                "LastCheckpoint{'monitor': None}": {"best_model_path": "last.ckpt"}}},
               run / "last.ckpt")
    assert resolve_checkpoint(run) == run / "epoch007-acc0.9650.ckpt"


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


# -- end to end: train briefly with the shipped configs, then classify files ------------------------------------
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--test_after_fit", "false"]
QUICK = [*quick_args(max_epochs=1), "--test_after_fit", "false"]


def fit(*args: str) -> Path:
    """`python -m lightning_lab fit ...` in this process; returns the run's checkpoint folder."""
    from lightning_lab.cli import main

    main(["fit", *args])
    runs = sorted(Path("checkpoints").glob("*/version_*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_accuracy(checkpoint: Path) -> float:
    """`trainer.test` of the checkpoint's model on its data module's test split."""
    model, data = load_model_and_data(checkpoint)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]


test_accuracy.__test__ = False  # a helper, not a test


def save_test_split(checkpoint: Path, folder: Path, size: int | None, mode: str, suffix: str) -> int:
    """The data module's test images (uint8, as stored) as files named <n>_<label>.<suffix>, enlarged to `size`
    (None: stored size) by pixel replication and converted to `mode`. Returns how many.

    Pixel replication: a stored image has no finer detail, so the enlarged file is the same picture, and the data
    module's reduction (area averaging) must give the stored pixels back. (An 8x8 digit enlarged with a smoothing
    filter is a different, blurred picture: no reduction recovers it, and accuracy drops by 10-30 points.)"""
    _, data = load_model_and_data(checkpoint)
    data.setup("test")
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for x, y in data.test_dataloader():
        assert x.dtype == torch.uint8
        for image, label in zip(x, y):
            array = image.permute(1, 2, 0).squeeze(-1).numpy()
            picture = Image.fromarray(array)
            if size is not None:
                picture = picture.resize((size, size), Image.Resampling.NEAREST)
            picture.convert(mode).save(folder / f"{n:04d}_{int(label)}.{suffix}", quality=95)
            n += 1
    return n


def csv_accuracy(path: Path) -> float:
    rows = read_csv(path)
    return sum(Path(r["path"]).stem.split("_")[1] == r["prediction"] for r in rows) / len(rows)


def assert_predictions_match_test(checkpoint: Path, workdir: Path, variants: list[tuple[int | None, str, str]],
                                  exact: bool) -> None:
    """Classifying the saved test images gives test/acc: exactly at the stored size and mode, within 2 points
    for other sizes (resampling a file changes its pixels a little)."""
    expected = test_accuracy(checkpoint)
    for size, mode, suffix in variants:
        folder = workdir / f"test_{size}_{mode}_{suffix}"
        count = save_test_split(checkpoint, folder, size, mode, suffix)
        out = workdir / f"{folder.name}.csv"
        assert classify_main([str(checkpoint), str(folder), "--out", str(out)]) == 0
        assert len(read_csv(out)) == count
        accuracy = csv_accuracy(out)
        tolerance = 1e-6 if exact and size is None else 0.02
        assert abs(accuracy - expected) <= tolerance, (size, mode, suffix, accuracy, expected)


@pytest.mark.slow
def test_digits_files_classified_as_test_sees_them(workdir: Path, digits_run: DigitsRun,
                                                   capsys: pytest.CaptureFixture) -> None:
    run = digits_run.checkpoint_dir  # the shared 2-epoch digits run (conftest)
    best = resolve_checkpoint(run)
    assert best.name.startswith("epoch") and "-acc" in best.name
    assert_predictions_match_test(best, workdir, [(None, "L", "png"), (28, "L", "png"), (64, "RGB", "jpg")],
                                  exact=True)
    assert "--invert" not in capsys.readouterr().out  # light strokes on dark: no hint
    # CHECKPOINT as a run folder, a best-model folder and a file: the same predictions
    best_folder = workdir / "checkpoints" / "best" / "digits" / "cnn"
    best_folder.mkdir(parents=True)
    shutil.copy(best, best_folder / "model.ckpt")
    folder = workdir / "test_28_L_png"
    outputs = []
    for checkpoint in (run, best_folder, best):
        out = workdir / f"by_{len(outputs)}.csv"
        assert classify_main([str(checkpoint), str(folder), "--out", str(out), "--top-k", "2"]) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] == outputs[2]
    assert all(len(r["top_k"].split(";")) == 2 for r in read_csv(workdir / "by_0.csv"))
    # the same digits drawn dark on light, classified with --invert: the same predictions, to the digit
    inverted = workdir / "inverted"
    inverted.mkdir()
    for image in sorted((workdir / "test_None_L_png").iterdir()):
        ImageOps.invert(Image.open(image)).save(inverted / image.name)
    capsys.readouterr()
    assert classify_main([str(best), str(inverted), "--out", str(workdir / "inverted.csv"), "--invert"]) == 0
    assert "--invert" not in capsys.readouterr().out
    assert classify_main([str(best), str(inverted), "--out", str(workdir / "not_inverted.csv")]) == 0
    assert ("note: 64 of the first 64 images have a light border, but DigitsDataModule images are light strokes "
            "on a dark background: for dark drawings on light paper, run again with --invert"
            in capsys.readouterr().out)  # 359 images: the first 64 looked at
    def by_name(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
        return {Path(row.pop("path")).name: row for row in rows}

    plain = by_name(read_csv(workdir / "test_None_L_png.csv"))
    assert by_name(read_csv(workdir / "inverted.csv")) == plain and len(plain) == len(list(inverted.iterdir()))


@pytest.mark.slow
def test_mnist_idx_files_classified_as_test_sees_them(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     no_network: None) -> None:
    from fake_datasets import write_mnist

    write_mnist(workdir / "data", n_train=200, n_test=60)
    run = fit("--config", "mnist.yaml", "--data.init_args.download", "false", "--data.init_args.val_split", "40",
              "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "32", "--trainer.max_epochs", "1",
              *QUIET)
    checkpoint = resolve_checkpoint(run).resolve()
    assert_predictions_match_test(checkpoint, workdir, [(None, "L", "png"), (64, "RGB", "jpg")], exact=True)
    # On another machine (no MNIST files, no network): the checkpoint and the user's files are all it needs.
    elsewhere = workdir / "elsewhere"
    shutil.copytree(workdir / "test_None_L_png", elsewhere / "digits")
    monkeypatch.chdir(elsewhere)
    assert classify_main([str(checkpoint), "digits"]) == 0
    assert len(read_csv(elsewhere / "predictions.csv")) == len(list((elsewhere / "digits").iterdir()))
    assert not (elsewhere / "data").exists()


@pytest.mark.slow
def test_cats_dogs_class_names_csv_and_picture(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    from fake_datasets import write_pet_images

    written = write_pet_images(workdir / "data", n_per_class=12, size=40)
    run = fit("--config", "cats_dogs.yaml", "--data.init_args.download", "false", "--data.init_args.image_size", "32",
              "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", *QUICK)
    photos = workdir / "photos"
    shutil.copytree(workdir / "data" / "PetImages", photos)  # includes the archive's kinds of bad files
    capsys.readouterr()
    assert classify_main([str(run), str(photos), "--grid", "pets.png", "--accelerator", "cpu"]) == 0
    rows = read_csv(workdir / "predictions.csv")
    assert len(rows) == len(written["good"])
    assert {r["prediction"] for r in rows} <= {"cat", "dog"}
    assert all({name.split(":")[0] for name in r["top_k"].split(";")} == {"cat", "dog"} for r in rows)
    assert (workdir / "pets.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"Skipped {len(written['bad'])} of {len(written['good']) + len(written['bad'])} files" in printed


@pytest.mark.slow
def test_resnet18_checkpoint_classifies_without_the_pretrained_weights(workdir: Path, no_network: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ResNet-18 fine-tuned from ImageNet weights: its checkpoint holds every weight, so classifying needs
    neither the ImageNet file nor the network; the ImageNet normalisation comes with the data module."""
    from fake_datasets import write_pet_images

    write_pet_images(workdir / "data", n_per_class=8, size=40, corrupt=False)
    run = fit("--config", "resnet18_cats_dogs.yaml", "--model.net.init_args.weights", "none",
              "--data.init_args.download", "false", "--data.init_args.image_size", "32", "--data.init_args.augment",
              "false", "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", *QUICK)
    checkpoint = resolve_checkpoint(run)
    assert classify_main([str(checkpoint), "data/PetImages", "--out", "scratch.csv"]) == 0
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["datamodule_hyper_parameters"]["normalization"] == "imagenet"
    saved["hyper_parameters"]["net"]["init_args"]["weights"] = "IMAGENET1K_V1"  # as a fine-tuned run records it
    torch.save(saved, workdir / "finetuned.ckpt")
    monkeypatch.setenv("TORCH_HOME", str(workdir / "empty_torch_home"))
    assert classify_main(["finetuned.ckpt", "data/PetImages", "--out", "finetuned.csv"]) == 0
    assert (workdir / "finetuned.csv").read_text() == (workdir / "scratch.csv").read_text()


@pytest.mark.slow
def test_cifar10_class_names_csv_and_picture(workdir: Path, skip_cifar_md5: None) -> None:
    from fake_datasets import write_cifar10

    write_cifar10(workdir / "data", n_per_batch=20, n_test=20)
    run = fit("--config", "cifar.yaml", "--data.init_args.download", "false", "--data.init_args.val_split", "20",
              "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8", *QUICK)
    checkpoint = resolve_checkpoint(run)
    save_test_split(checkpoint, workdir / "mine", None, "RGB", "png")
    first = sorted((workdir / "mine").glob("*.png"))[0]
    Image.open(first).resize((120, 80)).save(workdir / "mine" / "wide.jpg")  # not square: resized, center-cropped
    assert classify_main([str(checkpoint), str(workdir / "mine" / "*.png"), str(workdir / "mine" / "wide.jpg"),
                          "--out", "cifar.csv", "--grid", "cifar.png", "--top-k", "10"]) == 0
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    rows = read_csv(workdir / "cifar.csv")
    assert len(rows) == 21 and {r["prediction"] for r in rows} <= set(names)
    assert sorted(name.split(":")[0] for name in rows[0]["top_k"].split(";")) == sorted(names)
    assert (workdir / "cifar.png").stat().st_size > 1000


@pytest.mark.slow
def test_command_line_bad_input_and_predict_writes_the_same_csv(workdir: Path, capsys: pytest.CaptureFixture,
                                                               digits_run: DigitsRun) -> None:
    from conftest import cli

    run = digits_run.checkpoint_dir
    checkpoint = resolve_checkpoint(run)
    good, bad = mixed_folder(workdir / "photos")
    (workdir / "no_images").mkdir()
    (workdir / "no_images" / "readme.txt").write_text("no pictures here")

    capsys.readouterr()
    assert cli("classify", str(run), "photos", "--out", "classify.csv") == 0
    assert len(read_csv(workdir / "classify.csv")) == len(good)
    assert f"Skipped {len(bad)} of {len(good) + len(bad)} files" in capsys.readouterr().out
    assert cli("classify", str(run), "no_images") == 2
    assert capsys.readouterr().err.strip().splitlines() == \
        ["error: nothing to classify in no_images: 1 file, none a readable image"]

    (workdir / "notes.ckpt").write_text("hello")
    for args in ([str(run), "missing_folder"], [str(run), "photos/*.gif"], ["notes.ckpt", "photos"],
                 [str(run), "photos", "--top-k", "0"], [str(run), "photos", "--batch-size", "0"]):
        capsys.readouterr()
        assert cli("classify", *args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err

    config = digits_run.log_dir / "config.yaml"
    assert cli("predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--data.init_args.predict_path",
               "photos", "--prediction_writer.out", "predict.csv", "--trainer.enable_progress_bar", "false") == 0
    assert (workdir / "predict.csv").read_text() == (workdir / "classify.csv").read_text()


def test_predict_on_the_test_split_writes_every_sample_also_with_batches_sliced_on_the_device(
        workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """The device-resident loader (the default on a GPU) has no sampler Lightning can read: predict goes through
    a DataLoader, so each row is its test sample's index."""
    from conftest import cli
    from fake_datasets import write_mnist

    write_mnist(workdir / "data", n_train=80, n_test=20)
    common = ["--config", "mnist.yaml", "--data.init_args.download", "false", "--data.init_args.val_split", "20",
              "--data.init_args.batch_size", "8", "--trainer.enable_progress_bar", "false"]
    for resident in ("false", "true"):
        out = workdir / f"resident_{resident}.csv"
        assert cli("predict", *common, "--data.init_args.device_resident", resident,
                   "--prediction_writer.out", str(out)) == 0, capsys.readouterr().err[-2000:]
        assert sorted(int(row["path"]) for row in read_csv(out)) == list(range(20))
    assert read_csv(workdir / "resident_true.csv") == read_csv(workdir / "resident_false.csv")
