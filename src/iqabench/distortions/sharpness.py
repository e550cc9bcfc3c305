"""Sharpness and contrast: over-sharpening and the contrast tone curve.

``high_sharpen`` is MATLAB ``imsharpen(im, 'Radius', 3, 'Amount', a)``:
unsharp masking of Lab lightness with a Gaussian of sigma 3 on a 13 x 13
support. ARNIQA's port blurs with sigma 6 instead; we follow MATLAB's
documented ``imsharpen``.

``contrast_change`` is KADID's ``curves`` through (0, 0), (0.3, 0.25 - a/4),
(0.5, 0.5), (0.7, 0.75 + a/4), (1, 1) on RGB: positive ``a`` raises contrast,
negative lowers it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .colorspace import lab_to_rgb, rgb_to_lab
from .filters import gaussian_blur_per_image, tone_curve

_SHARPEN_SIGMA = 3.0
_CONTRAST_KNOTS = (0.0, 0.3, 0.5, 0.7, 1.0)


def high_sharpen(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    lab = rgb_to_lab(x)
    lightness = lab[:, :1]
    blurred = gaussian_blur_per_image(lightness, [_SHARPEN_SIGMA] * len(params))
    amount = torch.tensor(params, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    lightness.add_(blurred.neg_().add_(lightness).mul_(amount))
    return lab_to_rgb(lab)


def contrast_change(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    knots_y = [(0.0, 0.25 - amount / 4, 0.5, 0.75 + amount / 4, 1.0) for amount in params]
    return tone_curve(x, _CONTRAST_KNOTS, knots_y)
