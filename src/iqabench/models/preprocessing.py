"""What a row does to an image before its encoder sees it, and the pooled features it reads out.

The authors' scripts differ (CONTRIQUE: whole image + half-size copy, L2 per
scale; ARNIQA: ImageNet mean/std, centre and corner crops; Re-IQA: no L2), so
each row declares a :class:`Preprocessing` (rows.py) and :func:`pooled_features`
applies it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..images import RESIZE_FILTERS, pil_resize

if TYPE_CHECKING:
    from .encoders import Encoder

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet weights
HALF_SCALE_MODES = tuple(RESIZE_FILTERS)  # PIL's filters; torch's antialiased modes of the same name match them


@dataclass(frozen=True)
class Preprocessing:
    """What a row does to an RGB image in [0, 1] before its model sees it.

    Every row gets the whole image, its short side capped at
    ``extract.max_short_side``. ``half_scale``: also pool the features of a
    ``(h // 2, w // 2)`` copy, resampled with this mode (antialiased, as PIL's
    ``resize``: ``bicubic`` is PIL's default, used by CONTRIQUE's, ARNIQA's
    ``test.py`` and Re-IQA's feature scripts; ``bilinear`` is torchvision's
    ``Resize``, ARNIQA's single-image demo); the copy is made before
    ``normalise`` (per-channel mean and std, e.g. :data:`IMAGENET_MEAN_STD`).
    ``resample_8bit``: the copy is PIL's own ``resize`` of the 8-bit image (on
    the CPU), bit for bit the authors' scripts; otherwise torch's PIL-matching
    kernel on floats, on the model's device, the copy fine-tuning makes too.
    ``l2``: each scale's pooled feature is L2-normalised before concatenation.
    ``crops``: 5 = ARNIQA's evaluation, the centre and four corner
    ``crop_size`` crops of each scale (zero-padded where a scale is smaller, as
    PIL's ``crop``), their features averaged; a ridge on the average predicts
    the average of its predictions on the crops. ARNIQA also fits its ridge on
    the 5 crops as separate samples; this fits it on their average.
    ``colour``: what the model reads (the NSS rows read BT.601 luma).
    """
    colour: str = "RGB"
    normalise: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    half_scale: str | None = None
    l2: bool = False
    crops: int = 1
    crop_size: int = 224
    resample_8bit: bool = False

    def __post_init__(self) -> None:
        if self.crops not in (1, 5):
            raise ValueError(f"Preprocessing.crops must be 1 (whole image) or 5 (centre + corners), not {self.crops}")
        if self.normalise is not None and not _mean_std(self.normalise):
            raise ValueError(f"Preprocessing.normalise must be ((3 means), (3 stds > 0)) for the RGB channels, "
                             f"e.g. IMAGENET_MEAN_STD {IMAGENET_MEAN_STD}, not {self.normalise!r}")
        if self.half_scale not in (None, *HALF_SCALE_MODES):
            raise ValueError(f"Preprocessing.half_scale must be None (no half-size copy) or one of "
                             f"{list(HALF_SCALE_MODES)}, not {self.half_scale!r}")

    def describe(self) -> str:
        resampled = f"{self.half_scale}, PIL on 8 bits" if self.resample_8bit else self.half_scale
        parts = [self.colour, "whole image" + (f" + half-size copy ({resampled})" if self.half_scale else "")]
        if self.normalise:
            parts.append("ImageNet mean/std" if self.normalise == IMAGENET_MEAN_STD else f"mean/std {self.normalise}")
        if self.l2:
            parts.append("each scale L2-normalised")
        if self.crops == 5:
            parts.append(f"features of 5 {self.crop_size}-px crops (centre, corners) per scale averaged")
        return ", ".join(parts)

    def on_floats(self) -> Preprocessing:
        """The same preprocessing with the half-size copy made on floats, as fine-tuning makes it."""
        return replace(self, resample_8bit=False)


def _mean_std(value) -> bool:
    try:
        mean, std = (tuple(float(v) for v in part) for part in value)
    except (TypeError, ValueError):
        return False
    return len(mean) == len(std) == 3 and all(math.isfinite(v) for v in mean + std) and min(std) > 0


# CONTRIQUE's demo_feat.py: PIL's default resize for the half-size copy, no mean/std, L2 per scale.
CONTRIQUE = Preprocessing(half_scale="bicubic", l2=True)


@torch.no_grad()
def pooled_features(encoder: Encoder, images: torch.Tensor, preprocessing: Preprocessing = CONTRIQUE) -> torch.Tensor:
    """Globally pooled features of the image (and of its half-size copy), concatenated: B x (1 or 2) * out_dim.

    With the default, CONTRIQUE's frozen features as its ``demo_feat.py``: the
    half-size copy is PIL's default ``resize`` (bicubic, antialiased; here
    torch's PIL-matching kernel on floats unless ``resample_8bit``), and
    ``CONTRIQUE_model(normalize=True)`` L2-normalises each 2048-d feature.
    """
    scales = [images]
    if preprocessing.half_scale:
        scales.append(half_size(images, preprocessing.half_scale, resample_8bit=preprocessing.resample_8bit))
    if preprocessing.crops == 5:  # before mean/std, so that padding is black as in PIL
        scales = [_centre_and_corners(x, preprocessing.crop_size) for x in scales]  # 5B x C x s x s, crop-major
    if preprocessing.normalise:
        mean, std = (torch.tensor(v, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                     for v in preprocessing.normalise)
        scales = [(x - mean) / std for x in scales]
    pooled = [encoder(x) for x in scales]
    if preprocessing.l2:
        pooled = [F.normalize(p, dim=1) for p in pooled]
    if preprocessing.crops == 5:
        pooled = [p.view(5, len(images), -1).mean(dim=0) for p in pooled]
    return torch.cat(pooled, dim=1)


def half_size(images: torch.Tensor, mode: str = "bicubic", resample_8bit: bool = False) -> torch.Tensor:
    """The ``(h // 2, w // 2)`` copy of images in [0, 1] as PIL's antialiased ``resize`` makes it: on floats
    (any device, within ~7/255 of PIL), or with ``resample_8bit`` by PIL itself on the 8-bit images.

    The authors' copy is ``img.resize((w // 2, h // 2))`` (CONTRIQUE demo_feat.py:21, ARNIQA
    utils/utils_data.py:177, Re-IQA demo_quality_aware_feats.py:52): an output size, so PIL maps pixels with
    the ratio in/out. ``scale_factor=0.5`` would map with exactly 2 and shift an odd-sized image by up to half
    a pixel (15/255 off PIL on 225 x 301); for even sizes the two are bit-identical.
    """
    h, w = images.shape[-2:]
    if resample_8bit:
        return torch.stack([pil_resize(image, (h // 2, w // 2), mode) for image in images])
    return F.interpolate(images, size=(h // 2, w // 2), mode=mode, antialias=True, align_corners=False).clamp(0, 1)


def _centre_and_corners(x: torch.Tensor, size: int) -> torch.Tensor:
    """ARNIQA's ``center_corners_crop`` on a batch: centre, top-left, bottom-left, top-right, bottom-right.

    miccunifi/ARNIQA utils/utils_data.py:205-209, applied to both scales before ToTensor and Normalize
    (data/dataset_base_iqa.py:61-72).
    """
    from torchvision.transforms import functional as TF  # pads with zeros outside the image, as PIL's crop

    h, w = x.shape[-2:]
    corners = [(h // 2 - size // 2, w // 2 - size // 2), (0, 0), (h - size, 0), (0, w - size), (h - size, w - size)]
    return torch.cat([TF.crop(x, top, left, size, size) for top, left in corners])
