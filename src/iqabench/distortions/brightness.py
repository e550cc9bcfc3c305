"""Brightness changes: brighten, darken (tone curves) and mean shift.

As in KADID's ``imbrighten``/``imdarken``: a spline tone curve through
(0, 0), (0.5, 0.5 ± amount/2), (1, 1). Brighten averages the curve applied to
RGB (weight 2) with the curve applied to Lab lightness (weight 1); darken
applies it to RGB only. Mean shift adds the signed amount to every channel.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .colorspace import lab_to_rgb, rgb_to_lab
from .filters import tone_curve

_MIDPOINT_KNOTS = (0.0, 0.5, 1.0)


def brighten(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    knots_y = [(0.0, 0.5 + amount / 2, 1.0) for amount in params]
    lab = rgb_to_lab(x)
    lab[:, :1] = tone_curve(lab[:, :1].div_(100), _MIDPOINT_KNOTS, knots_y).mul_(100)
    via_lab = lab_to_rgb(lab).clamp_(0, 1)
    via_rgb = tone_curve(x, _MIDPOINT_KNOTS, knots_y)
    return via_rgb.mul_(2).add_(via_lab).div_(3)


def darken(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    return tone_curve(x, _MIDPOINT_KNOTS, [(0.0, 0.5 - amount / 2, 1.0) for amount in params])


def mean_shift(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    return x + torch.tensor(params, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
