"""Images in and out: one place that decides how odd files become RGB.

Datasets mix grayscale, palette, alpha, CMYK and 16-bit files. Every consumer
(registration checks, feature extraction, scoring) must see the same pixels, so
conversion happens here (``load_rgb``), ``check_images`` says which files will
be converted, by mode, and ``load`` gives the float tensor the models read.
"""
from __future__ import annotations

import contextlib
import functools
import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.progress import track

from . import io

# Pillow refuses images above 2 x MAX_IMAGE_PIXELS (decompression-bomb guard); this variable moves the limit.
MAX_PIXELS_ENV = "IQABENCH_MAX_IMAGE_PIXELS"


def _pixel_limit(raw: str) -> tuple[int | None, str | None]:
    """(Pillow's MAX_IMAGE_PIXELS for the variable's value, or why the value is none): a typo ended every command
    that imports this module in a ValueError traceback, and 0 or -5 refused every image as "too large"."""
    try:
        pixels = float(raw.strip().replace(",", "").replace("_", ""))   # 4e8 and 400,000,000 too
    except ValueError:
        pixels = float("nan")
    if not (pixels >= 2 and pixels < float("inf")):
        return None, (f"the environment variable {MAX_PIXELS_ENV}={raw!r} is not a pixel count, so Pillow's own "
                      f"limit applies: set it to the largest image to decode, in pixels (e.g. {MAX_PIXELS_ENV}="
                      "400000000 for 20000 x 20000), or unset it")
    return int(pixels) // 2, None


# A bad value is said (once) by the functions that decode, never at import: it ended every command in a traceback.
PIXEL_LIMIT_PROBLEM = None
if os.environ.get(MAX_PIXELS_ENV, "").strip():
    _limit, PIXEL_LIMIT_PROBLEM = _pixel_limit(os.environ[MAX_PIXELS_ENV])
    if _limit is not None:
        Image.MAX_IMAGE_PIXELS = _limit


@functools.cache
def _warn_pixel_limit_problem() -> None:
    if PIXEL_LIMIT_PROBLEM:
        warnings.warn(PIXEL_LIMIT_PROBLEM, stacklevel=3)

SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
WIDE_RGB, WIDE_RGBA = "RGB;16", "RGBA;16"  # not Pillow modes: how a 16-bit colour file is tallied and named


def _mode(image: Image.Image) -> str:
    """The image's mode, or WIDE_RGB / WIDE_RGBA for 16 bits per colour channel, which Pillow reduces to 8 while
    it decodes and opens as plain "RGB" / "RGBA" (16-bit grey got its note; 16-bit colour was reduced silently).
    Read from the raw mode of the file's tiles, before decoding (no pixel is changed here)."""
    for tile in image.tile:
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if image.mode in ("RGB", "RGBA") and isinstance(raw, str) and ";16" in raw:
            return WIDE_RGB if image.mode == "RGB" else WIDE_RGBA
    return image.mode


CONVERSION = {
    "L": "grayscale replicated to 3 channels", "LA": "grayscale replicated, alpha dropped",
    "RGBA": "alpha dropped", "P": "palette expanded (alpha dropped)", "PA": "palette expanded, alpha dropped",
    "CMYK": "CMYK converted to RGB by Pillow", "YCbCr": "YCbCr converted to RGB",
    "1": "bilevel expanded to RGB", **{m: "16-bit scaled to 8-bit (value / 257)" for m in SIXTEEN_BIT},
    # Colour with 16 bits per channel: Pillow opens it as 8-bit RGB(A), keeping each value's high byte.
    WIDE_RGB: "16-bit RGB reduced to 8-bit by Pillow (value / 256, rounded down)",
    WIDE_RGBA: "16-bit RGBA reduced to 8-bit by Pillow (value / 256, rounded down), alpha dropped",
}


# The encoders also read a half-size copy and reduce it 8x or more; below 32 px a side (16 at half size)
# the features hold no texture to speak of, and a 1 px image cannot be halved at all. Checked when a dataset is
# registered and before `iqabench score` runs a model.
MIN_SIDE = 32

# Modes with no defined 0-255 mapping: Pillow's convert("RGB") clips floats, so [0, 1] data became black.
UNSUPPORTED = {"F": "its pixels are 32-bit floating point (mode 'F'), whose range iqabench cannot know; save it as an "
                    "8- or 16-bit image"}


def _beyond_16_bit(image: Image.Image) -> str | None:
    """Why a 32-bit integer image (mode 'I', which also holds 16-bit data) cannot be read as 16-bit: values
    outside 0-65535 were clipped to white or black under "16-bit scaled to 8-bit"."""
    if image.mode != "I":
        return None
    values = np.asarray(image)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= 65535:
        return None
    return (f"its pixels are 32-bit integers from {low} to {high}, beyond 16 bits (0-65535), so iqabench cannot "
            "know their range; save it as an 8- or 16-bit image")


@dataclass
class ImageReport:
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    too_small: list[tuple[str, int, int]] = field(default_factory=list)  # (path, width, height) below MIN_SIDE
    converted: Counter = field(default_factory=Counter)              # mode -> count
    examples: dict[str, str] = field(default_factory=dict)           # mode -> one path

    def conversion_note(self) -> str:
        return "; ".join(f"{n} image(s) of mode {mode!r} ({CONVERSION.get(mode, 'converted to RGB')}, e.g. "
                         f"{Path(self.examples[mode]).name})" for mode, n in sorted(self.converted.items()))


def load_rgb(path: str | Path, *, exif_transpose: bool = False) -> Image.Image:
    """Open any supported image as 8-bit RGB, converting as ``CONVERSION`` describes.

    ``exif_transpose`` turns the pixels as the EXIF orientation tag says (a phone photo as it is displayed).
    Off by default: published datasets are read without it by the field's tools (pyiqa, the authors' loaders)."""
    with Image.open(path) as image:
        image.load()
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
        if image.mode in UNSUPPORTED:
            raise OSError(UNSUPPORTED[image.mode])  # the family Pillow uses for unreadable files: every caller names it
        if image.mode in SIXTEEN_BIT:
            wide = _beyond_16_bit(image)
            if wide:
                raise OSError(wide)
            values = np.asarray(image, dtype=np.float64) / 257.0
            gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
            return Image.fromarray(gray, "L").convert("RGB")
        return image.convert("RGB") if image.mode != "RGB" else image.copy()


def check_images(paths, *, progress: bool = True, label: str = "checking images",
                 min_side: int = MIN_SIDE) -> ImageReport:
    """Decode every image fully (truncated files fail only then), tally non-RGB modes and list the images
    with a side under ``min_side`` px (the models cannot read them)."""
    _warn_pixel_limit_problem()
    report = ImageReport()
    paths = [str(p) for p in paths]
    for path in track(paths, description=label, disable=not progress, transient=True):
        try:
            with _named_size_warning(path), Image.open(path) as image:
                width, height = image.size  # before draft(), which shrinks it
                tallied = _mode(image)  # before load(), which empties the tiles
                if image.format == "JPEG":
                    # Decoding at 1/8 scale still reads every entropy-coded byte.
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
                mode = image.mode
                wide = _beyond_16_bit(image) if mode in SIXTEEN_BIT else None
        except Image.DecompressionBombError as err:
            report.unreadable.append((path, _too_large(path, err)))
            continue
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            empty = isinstance(err, UnidentifiedImageError) and os.path.getsize(path) == 0
            report.unreadable.append((path, "empty (0 bytes)" if empty else str(err) or type(err).__name__))
            continue
        if mode in UNSUPPORTED or wide:
            report.unreadable.append((path, wide or UNSUPPORTED[mode]))
            continue
        if min(width, height) < min_side:
            report.too_small.append((path, width, height))
        if tallied != "RGB":
            report.converted[tallied] += 1
            report.examples.setdefault(tallied, path)
    return report


class ImageError(ValueError):
    """A file that is not a readable image; the message names it."""


class UndefinedImagesError(ValueError):
    """Raised by a row's feature function for a batch on which the row has no value (NIQE on images smaller than
    one of its patches): :func:`iqabench.features.extract` keeps NaN for those images, as for a NaN row."""


def _too_large(path, err: Exception) -> str:
    # Pillow's message has both numbers: "Image size (N pixels) exceeds limit of M pixels, ...".
    fix = f" ({PIXEL_LIMIT_PROBLEM})" if PIXEL_LIMIT_PROBLEM else ""
    return (f"{path}: too large to decode safely: {err} If the file is trusted, raise the limit with the "
            f"environment variable {MAX_PIXELS_ENV}=PIXELS{fix}, or downscale the image")


@contextlib.contextmanager
def _named_size_warning(path):
    """Pillow's warnings while it opens and decodes a file name no file: add it. The decompression-bomb warning
    (an image above half the refusal limit) says how to raise the limit; the others ("Corrupt EXIF data",
    "Tag data larger than file", ...) are said as Pillow words them, after the file's name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        yield
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            warnings.warn(f"{path}: {w.message} It is decoded all the same; if the file is trusted, raise the limit "
                          f"with the environment variable {MAX_PIXELS_ENV}=PIXELS", stacklevel=3)
        elif str(w.message).startswith(f"{path}: "):  # already named
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            warnings.warn(f"{path}: {' '.join(str(w.message).split())}", w.category, stacklevel=3)


def load(path: str | os.PathLike, *, exif_transpose: bool = False) -> torch.Tensor:
    """Read an image as RGB float32 3 x H x W in [0, 1], converted as ``load_rgb`` does (with a warning).

    ``exif_transpose``: turned as its EXIF orientation says, for a user's own photos (``iqabench score``)."""
    _warn_pixel_limit_problem()
    path = Path(path)
    try:
        found = path.stat()  # one look (it was five): is it there, and what is it
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except OSError as err:  # a name over the file system's limit, a link loop: is_dir() raised a traceback
        raise ImageError(f"{io.shown_path(path)}: {err.strerror or err}; check the file name") from None
    if stat.S_ISDIR(found.st_mode):
        raise ImageError(f"{path}: is a folder, not an image; pass the image files in it (e.g. {path}/*.jpg)")
    if not stat.S_ISREG(found.st_mode):  # a pipe or a device: "no such image file" misled
        raise ImageError(f"{path}: {io.NOT_REGULAR}; pass image files")
    if found.st_size == 0:  # Pillow's "cannot identify image file" hid that nothing is there
        raise ImageError(f"{path}: is empty (0 bytes); copy it again or remove it")
    try:
        with _named_size_warning(path):
            with Image.open(path) as probe:
                mode, frames, kind = _mode(probe), getattr(probe, "n_frames", 1), probe.format
            arr = np.asarray(load_rgb(path, exif_transpose=exif_transpose), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageError(_too_large(path, exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); check the file or remove it") from exc
    if mode != "RGB":
        warnings.warn(f"{path}: {CONVERSION.get(mode, 'converted to RGB')}", stacklevel=2)
    if frames > 1:  # an animated GIF/PNG/WebP or a multi-page TIFF: only its first frame is read
        pages = "multi-page: page" if kind == "TIFF" else "animated: frame"
        warnings.warn(f"{path}: {pages} 1 of {frames} used", stacklevel=2)
    return from_uint8(arr)


# A float64 pixel this close to a half grey level is taken as the half. A tie in exact arithmetic (a blur over
# quantised levels, say) lands ~1e-13 to one side of it or the other depending on the CPU's kernels: an AMD
# AVX-512 machine and an (emulated) Intel AVX2 one stored one pixel of the embedded sets one level apart. Left to
# chance is a value within that noise of the band's edges, as rare as a non-tie near the plain rounding boundary
# (docs/reproducibility.md).
TIE_TOLERANCE = 1e-9


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] (any shape) -> uint8 levels, rounded half to even, the same on every CPU for float64.

    Through int16: torch's direct float -> uint8 cast is 0.38 ms for 3 x 384 x 512 on one thread, via int16
    0.08 ms. float32 is left as it is: its own rounding error is far above the tolerance.
    """
    levels = x.mul(255)
    if levels.dtype == torch.float64:
        half = levels.floor().add_(0.5)
        levels = torch.where((levels - half).abs_() < TIE_TOLERANCE, half, levels)
    return levels.round_().to(torch.int16).to(torch.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3 x H x W float in [0, 1] -> H x W x 3 uint8 (:func:`quantize`)."""
    return quantize(image.detach().clamp(0, 1)).permute(1, 2, 0).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """H x W x 3 (or H x W gray) uint8 -> 3 x H x W float in [0, 1]."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.array(array[..., :3])).permute(2, 0, 1).float().div_(255.0)


# The resampling modes a row may name: PIL's filters, whose antialiased torch twins (F.interpolate) share the name.
RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def pil_resize(image: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """3 x H x W in [0, 1] -> 3 x ``size`` (h, w): PIL's antialiased ``resize`` of the 8-bit image.

    What the authors' loaders do (``Image.open(...).convert("RGB").resize(...)``), bit for bit: PIL rounds to
    8 bits between its horizontal and vertical passes, which no float kernel reproduces (torch's
    PIL-matching one is up to ~7/255 off on photographs)."""
    resized = Image.fromarray(to_uint8(image)).resize((size[1], size[0]), RESIZE_FILTERS[mode])
    return from_uint8(np.asarray(resized)).to(image.device, image.dtype)


def resize_short_side(image: torch.Tensor, short_side: int) -> torch.Tensor:
    """A 3 x H x W image resized so that min(H, W) == short_side, as ARNIQA's SPAQ loader does it
    (miccunifi/ARNIQA data/dataset_spaq.py:52-61): the long side truncated by ``int()``, PIL's bicubic
    on the 8-bit image (:func:`pil_resize`)."""
    h, w = image.shape[1:]
    aspect = w / h
    size = (int(short_side / aspect), short_side) if w < h else (short_side, int(short_side * aspect))
    return pil_resize(image, (max(1, size[0]), max(1, size[1])), "bicubic")


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    with io.atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return Path(path)
