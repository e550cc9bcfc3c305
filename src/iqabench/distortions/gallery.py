"""A PNG grid of every type at every level, for eyeballing the engine
(``reports/distortions.png``): a row per type, columns pristine + each level.

The tiles are assembled into one montage and drawn with a single ``imshow``
(an axis per tile takes matplotlib several seconds on a slow CPU). The photo is
shrunk to ``tile`` pixels first (80: the file is ~1.7 MB; at the photo's full
512 px it was 54 MB, kept in git and logged to MLflow on every run), and the
PNG is written as RGB, not matplotlib's RGBA.
"""
from __future__ import annotations

import io as _io
import os

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .. import io
from .engine import check_images, distort
from .params import DISTORTION_TYPES, LEVEL_PARAMETERS, NUM_LEVELS

_PADDING = 4


def save_gallery(image: Tensor, path: str | os.PathLike, seed: int = 0, dpi: int = 100, tile: int = 80) -> None:
    """Write the grid for one 3 x H x W image in [0, 1] to ``path`` (atomic).

    A larger image is centre-cropped to a square and shrunk (antialiased) to ``tile`` pixels, so the
    distortions act at the scale of the pipeline's own patches. Random types draw from
    ``torch.Generator().manual_seed(seed)`` on the image's device, so the figure is reproducible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(image, Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"save_gallery takes one image of shape 3 x H x W, got {shape}")
    if image.device.type == "cpu":  # float64: the same PNG bytes on CPUs with other vector kernels
        image = image.double()
    side = min(image.shape[-2:])
    if side > tile:
        top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
        square = image[:, top:top + side, left:left + side].unsqueeze(0)
        image = F.interpolate(square, size=(tile, tile), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)[0]
    batch = image.unsqueeze(0)
    check_images(batch)
    generator = torch.Generator(device=image.device).manual_seed(seed)
    columns = NUM_LEVELS + 1
    levels = torch.arange(columns)
    tiles = [distort(batch.expand(columns, -1, -1, -1).contiguous(), dist, levels, generator).float().cpu()
             for dist in DISTORTION_TYPES]
    from torchvision.utils import make_grid  # its import costs seconds; only the gallery needs it

    montage = make_grid(torch.cat(tiles), nrow=columns, padding=_PADDING, pad_value=1.0)

    height, width = image.shape[-2:]
    step_y, step_x = height + _PADDING, width + _PADDING
    label_margin = 2.0  # inches of room for the type names and parameters on the left
    figure_width = montage.shape[-1] / dpi + label_margin
    figure, axis = plt.subplots(figsize=(figure_width, montage.shape[-2] / dpi + 0.4), dpi=dpi)
    axis.imshow(montage.permute(1, 2, 0).numpy(), interpolation="nearest")
    axis.set_xticks([_PADDING + step_x * c + width / 2 for c in range(columns)])
    axis.set_xticklabels(["pristine"] + [f"level {c}" for c in range(1, columns)], fontsize=8)
    axis.xaxis.tick_top()
    axis.set_yticks([_PADDING + step_y * r + height / 2 for r in range(len(DISTORTION_TYPES))])
    axis.set_yticklabels([f"{dist}\n({', '.join(f'{p:g}' for p in LEVEL_PARAMETERS[dist])})"
                          for dist in DISTORTION_TYPES], fontsize=7)
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    figure.subplots_adjust(left=label_margin / figure_width, right=0.99, top=0.98, bottom=0.01)
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    buffer.seek(0)
    with io.atomic_path(path) as tmp:
        Image.open(buffer).convert("RGB").save(tmp, format="png", optimize=True)
