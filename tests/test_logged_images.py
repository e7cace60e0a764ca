"""lightning_lab.logged_images: images a run logged to TensorBoard, read back."""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from lightning_lab.logged_images import logged_images


def figure(color: str) -> Figure:
    fig = Figure(figsize=(1, 1), dpi=20)
    fig.patch.set_facecolor(color)
    return fig


def test_the_newest_image_of_each_tag_as_png(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_figure("test/confusion_matrix", figure("red"), global_step=1)
        writer.add_figure("test/confusion_matrix", figure("blue"), global_step=2)
        writer.add_figure("test/predictions", figure("green"), global_step=2)
        writer.add_scalar("test/acc", 0.5, global_step=2)
    images = logged_images(tmp_path)
    assert sorted(images) == ["test/confusion_matrix", "test/predictions"]
    assert all(data.startswith(b"\x89PNG") for data in images.values())
    r, g, b = np.asarray(Image.open(io.BytesIO(images["test/confusion_matrix"])).convert("RGB"))[10, 10]
    assert b > 200 and r < 50  # blue: step 2, not the red of step 1


def test_no_folder_or_no_images_gives_nothing(tmp_path):
    assert logged_images(tmp_path / "missing") == {}
    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_scalar("x", 1.0, global_step=0)
    assert logged_images(tmp_path) == {}
