"""The distortion types: one :class:`Distortion` entry each, in class-index order.

Everything else is derived from :data:`DISTORTIONS`: the type names, groups and
level tables (:mod:`.params`), the engine's function map and random types
(:mod:`.engine`) and the class count. To add a type, write its function
(``fn(x, params, generator) -> Tensor``, see :mod:`.engine`) and append one
entry; appending keeps every existing class index.

Types and order follow Lin, Hosu & Saupe (2019), "KADID-10k: a large-scale
artificially distorted IQA database", and the MATLAB generator released with
KADIS-700k (``matlab_code_imdistort/imdist_generator.m``). The operations are
MATLAB's, with the departures each module lists; the generator's per-image
min-max stretch (``mapmm``) of its input and output is not applied (nor by
ARNIQA's port): outputs are clipped to [0, 1].

The level table is ARNIQA's (``utils/utils_data.py``, ``distortion_range``),
what ARNIQA pretrains with, for the 23 types it has. It is the MATLAB table
except for three types:

* ``jpeg2000`` level 5: compression ratio 170 (MATLAB: 400);
* ``mean_shift`` (0, +0.08, -0.08, +0.15, -0.15) and ``contrast_change``
  (0, +0.15, -0.4, +0.3, -0.6): MATLAB lists the values in signed order,
  (0.15, 0.08, 0, -0.08, -0.15) and (0.3, 0.15, 0, -0.4, -0.6), amount 0 at
  level 3; ARNIQA's order grows in magnitude, amount 0 at level 1.
  CONTRIQUE's class labels therefore name those levels as ARNIQA orders them.

The two types ARNIQA leaves out take MATLAB's values: ``color_quantization``
64/48/32/16/8 colours and ``denoise`` noise variances 0.01..0.15.

Level 1 of ``mean_shift`` (amount 0) and of ``color_saturation_lab`` (factor 1)
leaves the image unchanged, and the signed levels are not ordered by pixel error; tests check those types against their
signed effect instead of against a monotone pixel error.

Groups are ARNIQA's seven (Agnolucci et al., WACV 2024); ARNIQA has no
``color_quantization`` or ``denoise``, so they join the colour and noise groups
where KADID's own taxonomy places them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from . import blur, brightness, color, compression, noise, sharpness, spatial

DistortionFn = Callable[[Tensor, list, torch.Generator], Tensor]

NUM_LEVELS = 5


@dataclass(frozen=True)
class Distortion:
    name: str
    group: str  # groups are ordered by their first type; ARNIQA's compositions draw one type per group
    levels: tuple[float, ...]  # the parameter of levels 1..NUM_LEVELS, in the unit ``function`` takes
    function: DistortionFn
    random: bool = False  # its output depends on the generator


DISTORTIONS: tuple[Distortion, ...] = (
    Distortion("gaussian_blur", "blur", (0.1, 0.5, 1.0, 2.0, 5.0), blur.gaussian_blur),  # sigma (px)
    Distortion("lens_blur", "blur", (1, 2, 4, 6, 8), blur.lens_blur),  # disk radius (px)
    Distortion("motion_blur", "blur", (1, 2, 4, 6, 10), blur.motion_blur, random=True),  # line length (px)
    Distortion("color_diffusion", "color distortion", (1, 3, 6, 8, 12), color.color_diffusion),  # amount
    Distortion("color_shift", "color distortion", (1, 3, 6, 8, 12), color.color_shift,
               random=True),  # shift length (px)
    Distortion("color_quantization", "color distortion", (64, 48, 32, 16, 8),
               color.color_quantization),  # palette size
    Distortion("color_saturation_hsv", "color distortion", (0.4, 0.2, 0.1, 0.0, -0.4),
               color.color_saturation_hsv),  # S multiplier
    Distortion("color_saturation_lab", "color distortion", (1, 2, 3, 6, 9),
               color.color_saturation_lab),  # a*b* multiplier
    Distortion("jpeg2000", "jpeg", (16, 32, 45, 120, 170), compression.jpeg2000),  # compression ratio
    Distortion("jpeg", "jpeg", (43, 36, 24, 7, 4), compression.jpeg),  # quality
    Distortion("white_noise", "noise", (0.001, 0.002, 0.003, 0.005, 0.01), noise.white_noise,
               random=True),  # variance
    Distortion("white_noise_ycbcr", "noise", (0.0001, 0.0005, 0.001, 0.002, 0.003), noise.white_noise_ycbcr,
               random=True),  # variance
    Distortion("impulse_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.03), noise.impulse_noise,
               random=True),  # density
    Distortion("multiplicative_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.05), noise.multiplicative_noise,
               random=True),  # variance
    Distortion("denoise", "noise", (0.01, 0.03, 0.05, 0.1, 0.15), noise.denoise,
               random=True),  # noise variance before denoising
    Distortion("brighten", "brightness change", (0.1, 0.2, 0.4, 0.7, 1.1), brightness.brighten),
    Distortion("darken", "brightness change", (0.05, 0.1, 0.2, 0.4, 0.8), brightness.darken),
    Distortion("mean_shift", "brightness change", (0.0, 0.08, -0.08, 0.15, -0.15), brightness.mean_shift),
    Distortion("jitter", "spatial distortion", (0.05, 0.1, 0.2, 0.5, 1.0), spatial.jitter,
               random=True),  # displacement std (px)
    Distortion("non_eccentricity_patch", "spatial distortion", (20, 40, 60, 80, 100),
               spatial.non_eccentricity_patch, random=True),  # number of patches
    Distortion("pixelate", "spatial distortion", (0.01, 0.05, 0.1, 0.2, 0.5), spatial.pixelate),
    Distortion("quantization", "spatial distortion", (20, 16, 13, 10, 7), spatial.quantization),  # grey levels
    Distortion("color_block", "spatial distortion", (2, 4, 6, 8, 10), spatial.color_block,
               random=True),  # number of blocks
    Distortion("high_sharpen", "sharpness & contrast", (1, 2, 3, 6, 12), sharpness.high_sharpen),  # unsharp amount
    Distortion("contrast_change", "sharpness & contrast", (0.0, 0.15, -0.4, 0.3, -0.6), sharpness.contrast_change),
)


def check(distortions: tuple[Distortion, ...]) -> None:
    """Raise ``ValueError`` on a repeated name or a level table of the wrong length: either would
    shift or break every class index after it."""
    names = [d.name for d in distortions]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"distortion type(s) declared twice: {', '.join(repeated)}")
    for d in distortions:
        if len(d.levels) != NUM_LEVELS:
            raise ValueError(f"distortion {d.name!r} has {len(d.levels)} level parameters; it needs {NUM_LEVELS}")
