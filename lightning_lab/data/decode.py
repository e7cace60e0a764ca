"""The one whole-image decode check: a file is usable only if every pixel decodes (the PetImages archive and
users' folders hold empty, truncated and non-image files); and the opening of a user's image, upright."""
from __future__ import annotations

import os
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError


def decode(path: str | os.PathLike) -> Image.Image:
    """The fully decoded image as stored (`Image.verify` lets truncated JPEGs through; `load` does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Possibly corrupt EXIF data", palette transparency notes
        with Image.open(path) as image:
            image.load()  # pixels stay in memory after the file is closed
    return image


def open_image(path: str | os.PathLike) -> Image.Image:
    """The fully decoded image, turned upright as its EXIF orientation tag says (phone photos are stored
    sideways with such a tag); an unreadable EXIF block leaves the image as stored."""
    image = decode(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # malformed EXIF (Pillow raises several types): the pixels themselves are fine
            pass
    return image


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why `path` is not a usable image (None when it decodes fully)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        decode(path)
    except UnidentifiedImageError:
        return "not an image"
    except Exception as error:  # OSError (truncated), SyntaxError, ValueError, DecompressionBombError, struct.error
        text = str(error).strip().splitlines()
        detail = text[0] if text else type(error).__name__
        return f"truncated or corrupt image ({detail})"
    return None
