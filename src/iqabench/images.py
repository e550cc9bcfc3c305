"""Reading and writing images as float tensors in [0, 1], N x 3 x H x W."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import io


class ImageError(ValueError):
    """A file that is not a readable image; the message names it."""


def load(path: str | os.PathLike) -> torch.Tensor:
    """Read any PIL-readable image as RGB float32 3 x H x W in [0, 1].

    Grayscale, 16-bit, palette, CMYK and alpha images are converted to 8-bit RGB
    the same way every time (alpha is dropped, not composited), with a warning,
    so that two datasets never differ only in how a loader treated odd files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                arr = (arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0).round().astype(np.uint8)
                img = Image.fromarray(arr)
            if mode != "RGB":
                warnings.warn(f"{path}: converted {mode} image to RGB", stacklevel=2)
                img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); check the file or remove it") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3 x H x W float in [0, 1] -> H x W x 3 uint8 (rounded)."""
    return image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """H x W x 3 (or H x W gray) uint8 -> 3 x H x W float in [0, 1]."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float().div_(255.0)


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    with io.atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return Path(path)
