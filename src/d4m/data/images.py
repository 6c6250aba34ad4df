"""Decoding one image file robustly: any mode to RGB, broken files reported by name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from d4m.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class CorruptImage(DataError):
    """An image file that cannot be decoded."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert grayscale, palette, RGBA, CMYK and 16/32-bit images to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_rgb(path, where: str | None = None) -> Image.Image:
    """Open and fully decode ``path`` (a file name or a binary file object) as RGB; raise CorruptImage naming
    ``where`` (default: the path) if it cannot or must not be read.

    "Must not": a header declaring more than PIL's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb) is refused
    before any pixel is decoded. Any failure inside the decoder, whatever its type, is the file's fault.
    """
    where = where or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CorruptImage(f"{where}: cannot decode image (refused: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, struct.error, EOFError, ...
        raise CorruptImage(f"{where}: cannot decode image ({exc.__class__.__name__}: {exc})") from None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
