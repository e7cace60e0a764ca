"""The one image pipeline: stored uint8 (C, H, W) images -> batch -> device -> ``on_after_batch_transfer``:
uint8 -> float in [0, 1], training augmentation (batched, seeded per rank), resize to ``image_size``,
normalisation. A user's own picture enters through ``image_to_tensor`` at the stored size and then takes the
same road, so it reaches the network exactly as the evaluation images do.
"""
from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

from lightning_lab.data.augment import BatchAugment
from lightning_lab.data.base import BaseDataModule
from lightning_lab.errors import ConfigError


def image_to_tensor(image: Image.Image, shape: tuple[int, int, int], invert: bool = False) -> torch.Tensor:
    """Any PIL image (any size; modes L, RGB, RGBA, LA, P, I;16, I, F, ...) as uint8 ``shape`` (C, H, W): 16-bit,
    32-bit and float values scaled to 8 bits, transparency composited onto white, converted to grayscale or RGB (and
    inverted with ``invert``), its shorter side resized to fit (bilinear, antialiased), then center-cropped. An
    image already of that size and mode comes back unchanged."""
    channels, height, width = shape
    image = on_white(to_8_bit(image))
    image = image.convert("L" if channels == 1 else "RGB")
    if invert:
        image = ImageOps.invert(image)
    if image.size != (width, height):
        scale = max(height / image.height, width / image.width)
        size = [max(height, round(image.height * scale)), max(width, round(image.width * scale))]
        # area averaging when shrinking: exact for an enlarged copy of a stored image (pixel replication), and
        # what scikit-learn's 8x8 digits were made with; bicubic when enlarging
        resample = Image.Resampling.BOX if size[0] <= image.height else Image.Resampling.BICUBIC
        image = TF.center_crop(image.resize((size[1], size[0]), resample), [height, width])
    return TF.pil_to_tensor(image)


def to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``), 32-bit integer (``I``) or floating-point (``F``) grayscale image scaled to 8 bits
    (``L``); others unchanged.

    Pillow's own conversion clips such values at 255. ``I`` holds 16-bit data for some formats, so its values
    are scaled from 16 bits when they fit in them, else from 31 (negative values read as black). ``F`` values
    are read as [0, 1] when none exceeds 1 (how float images are usually stored), else as 0-255."""
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return _scaled_to_8_bit(values, 1.0 if values.max(initial=0) <= 1 else 255.0)
    if not (image.mode == "I" or image.mode.startswith("I;16")):
        return image
    values = np.asarray(image).astype(np.float64)
    return _scaled_to_8_bit(values, 2**16 - 1 if image.mode != "I" or values.max(initial=0) < 2**16 else 2**31 - 1)


def _scaled_to_8_bit(values: np.ndarray, top: float) -> Image.Image:
    """Values in [0, top] (others clipped) as an 8-bit grayscale image."""
    return Image.fromarray(np.rint(np.clip(values, 0, top) * (255 / top)).astype(np.uint8), mode="L")


def as_shown(image: Image.Image) -> Image.Image:
    """The image in RGB as an image viewer shows it: 16-bit, 32-bit and float values scaled to 8 bits,
    transparency composited onto white."""
    return on_white(to_8_bit(image)).convert("RGB")


def on_white(image: Image.Image) -> Image.Image:
    """An image with transparency (an alpha channel, or a transparent palette entry or colour) composited onto
    a white background, as RGB; others unchanged. A drawing on a transparent background reads as drawn on
    white paper."""
    if "A" not in image.getbands() and "a" not in image.getbands() and "transparency" not in image.info:
        return image
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


@functools.cache
def imagenet_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std the ImageNet weights of torchvision's ResNet-18 were trained with (the weights' own)."""
    from torchvision.models import ResNet18_Weights

    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    return tuple(transform.mean), tuple(transform.std)


class ImageDataModule(BaseDataModule):
    """Image datasets: subclasses set ``classes``, ``stored_shape`` (the uint8 images the loaders yield),
    ``mean``/``std`` (the dataset's per-channel statistics in [0, 1] units) and ``augmentation``.

    Args (besides the common ones):
        image_size: height and width the network sees; batches are resized to it on the device
            (None: the stored size).
        normalization: ``dataset``: the dataset's mean/std; ``imagenet``: the mean/std of torchvision's
            ImageNet weights (for a pretrained ResNet-18; grayscale images use their average).
    """

    stored_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: BatchAugment

    def __init__(self, image_size: int | None = None, normalization: Literal["dataset", "imagenet"] = "dataset",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if image_size is not None and image_size < 8:
            raise ConfigError(f"image_size must be >= 8 (or unset for the stored size), got {image_size!r}")
        self.image_size = image_size
        self.normalization = normalization
        self._normalizers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        """(C, H, W) of what the network sees."""
        channels, height, width = self.stored_shape
        if self.image_size is None:
            return channels, height, width
        return channels, self.image_size, self.image_size

    def predicts_files_only(self) -> bool:
        """Whether this run only classifies the user's files (``predict`` with ``predict_path``): then the dataset
        is neither downloaded nor loaded, so a checkpoint classifies on a machine without the dataset."""
        trainer = self.trainer
        return self.predict_path is not None and trainer is not None and trainer.predicting

    def image_to_tensor(self, image: Image.Image) -> torch.Tensor:
        """A user's image as the loaders store images: uint8 (C, H, W) at the stored size."""
        return image_to_tensor(image, self.stored_shape)

    def to_stored_tensor(self) -> Any:
        """``image_to_tensor`` as a picklable callable (for datasets read in worker processes)."""
        return functools.partial(image_to_tensor, shape=self.stored_shape)

    def normalization_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel, in [0, 1] units."""
        if self.normalization == "dataset":
            return self.mean, self.std
        mean, std = imagenet_stats()
        if self.stored_shape[0] == 1:
            return (sum(mean) / 3,), (sum(std) / 3,)
        return mean, std

    def normalizer(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as (1, C, 1, 1) tensors on ``device``, made once per device (no host copy per step)."""
        key = str(device)
        if key not in self._normalizers:
            mean, std = self.normalization_stats()
            self._normalizers[key] = (torch.tensor(mean, device=device).view(1, -1, 1, 1),
                                      torch.tensor(std, device=device).view(1, -1, 1, 1))
        return self._normalizers[key]

    def transform_batch(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """uint8 (B, C, H, W) as stored -> float32 (B, *input_shape), normalised; augmented when training."""
        x = x.float().div_(255)
        if training and self.augment and len(x):
            x = self.augmentation(x, self.augmentation_generator(x.device))
        if tuple(x.shape[1:]) != self.input_shape and len(x):
            x = TF.resize(x, list(self.input_shape[1:]), antialias=True)
        mean, std = self.normalizer(x.device)
        return (x - mean) / std

    def predict_dataloader(self) -> Any:
        """The user's files from ``predict_path`` (each sample ``(image, index)``), else the test split."""
        if self.predict_path is None:
            return super().predict_dataloader()
        from lightning_lab.data.user_images import UserImages  # written by the classify side; imported on use

        to_tensor = functools.partial(image_to_tensor, shape=self.stored_shape, invert=self.predict_invert)
        self.predict_images = UserImages(self.predict_path, to_tensor)
        return self.loader(self.predict_images, train=False, collate_fn=UserImages.collate)
