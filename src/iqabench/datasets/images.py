"""Checking that image files decode, and loading them as 8-bit RGB consistently.

Datasets mix grayscale, palette, alpha, CMYK and 16-bit files. Every consumer
must see the same pixels, so conversion happens in one place (``load_rgb``)
and ``check_images`` says which files will be converted, by mode.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
CONVERSION = {
    "L": "grayscale replicated to 3 channels", "LA": "grayscale replicated, alpha dropped",
    "RGBA": "alpha dropped", "P": "palette expanded (alpha dropped)", "PA": "palette expanded, alpha dropped",
    "CMYK": "CMYK converted to RGB by Pillow", "YCbCr": "YCbCr converted to RGB",
    "1": "bilevel expanded to RGB", **{m: "16-bit scaled to 8-bit (value / 257)" for m in SIXTEEN_BIT},
}


@dataclass
class ImageReport:
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    converted: Counter = field(default_factory=Counter)              # mode -> count
    examples: dict[str, str] = field(default_factory=dict)           # mode -> one path

    def conversion_note(self) -> str:
        return "; ".join(f"{n} {mode} image(s) ({CONVERSION.get(mode, 'converted to RGB')}, e.g. "
                         f"{Path(self.examples[mode]).name})" for mode, n in sorted(self.converted.items()))


def load_rgb(path: str | Path) -> Image.Image:
    """Open any supported image as 8-bit RGB, converting as ``CONVERSION`` describes."""
    with Image.open(path) as image:
        image.load()
        if image.mode in SIXTEEN_BIT:
            values = np.asarray(image, dtype=np.float64) / 257.0
            gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
            return Image.fromarray(gray, "L").convert("RGB")
        return image.convert("RGB") if image.mode != "RGB" else image.copy()


def check_images(paths, *, progress: bool = True, label: str = "checking images") -> ImageReport:
    """Decode every image fully (truncated files fail only then) and tally non-RGB modes."""
    report = ImageReport()
    paths = [str(p) for p in paths]
    for path in track(paths, description=label, disable=not progress, transient=True):
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    # Decoding at 1/8 scale still reads every entropy-coded byte.
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
                mode = image.mode
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            report.unreadable.append((path, str(err) or type(err).__name__))
            continue
        if mode != "RGB":
            report.converted[mode] += 1
            report.examples.setdefault(mode, path)
    return report
