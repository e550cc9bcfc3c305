"""Batched colour-space conversions matching MATLAB's ``rgb2lab``/``lab2rgb``
(sRGB, D65), ``rgb2hsv``/``hsv2rgb`` and ``rgb2ycbcr``/``ycbcr2rgb`` (BT.601
studio range), since the KADID generator works in those spaces.

All take and return N x 3 x H x W float tensors; inverse conversions do not
clip, so callers decide where out-of-gamut values are clamped (MATLAB clips
only when converting back to uint8).
"""
from __future__ import annotations

import torch
from torch import Tensor

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64)
_DELTA = 6.0 / 29.0

_RGB_TO_YCBCR = torch.tensor([[65.481, 128.553, 24.966],
                              [-37.797, -74.203, 112.0],
                              [112.0, -93.786, -18.214]], dtype=torch.float64) / 255.0
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # MATLAB rgb2gray


def _apply_matrix(x: Tensor, matrix: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(x), x)


def rgb_to_grey(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    return (_GREY_WEIGHTS[0] * r + _GREY_WEIGHTS[1] * g + _GREY_WEIGHTS[2] * b).unsqueeze(1)


def srgb_to_linear(x: Tensor) -> Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    # Lab edits push values outside the gamut; odd-symmetric extension keeps them finite.
    magnitude = x.abs()
    encoded = torch.where(magnitude <= 0.0031308, 12.92 * magnitude,
                          1.055 * magnitude.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    return torch.sign(x) * encoded


def rgb_to_lab(x: Tensor) -> Tensor:
    xyz = _apply_matrix(srgb_to_linear(x), _RGB_TO_XYZ) / _WHITE_D65.to(x).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(_DELTA ** 3) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), 1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    lightness, a, b = lab.unbind(1)
    fy = (lightness + 16) / 116
    f = torch.stack((fy + a / 500, fy, fy - b / 200), 1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29))
    xyz = xyz * _WHITE_D65.to(lab).view(1, 3, 1, 1)
    return linear_to_srgb(_apply_matrix(xyz, torch.linalg.inv(_RGB_TO_XYZ)))


def rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    value, _ = x.max(1)
    chroma = value - x.min(1).values
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe_chroma) % 6,
                      torch.where(value == g, (b - r) / safe_chroma + 2, (r - g) / safe_chroma + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    return torch.stack((hue, saturation, value), 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Standard sector formula; it extends linearly to negative saturation,
    which KADID's level 5 of ``color_saturation_hsv`` (factor -0.4) relies on."""
    hue, saturation, value = hsv.unbind(1)
    sector_position = (hue % 1.0) * 6
    sector = torch.floor(sector_position)
    fraction = sector_position - sector
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    sector = sector.long() % 6
    choices = {0: (value, t, p), 1: (q, value, p), 2: (p, value, t),
               3: (p, q, value), 4: (t, p, value), 5: (value, p, q)}
    out = torch.zeros_like(hsv)
    for index, (r, g, b) in choices.items():
        mask = (sector == index).unsqueeze(1)
        out = torch.where(mask, torch.stack((r, g, b), 1), out)
    return out


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    return _apply_matrix(x, _RGB_TO_YCBCR) + _YCBCR_OFFSET.to(x).view(1, 3, 1, 1)


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    return _apply_matrix(ycbcr - _YCBCR_OFFSET.to(ycbcr).view(1, 3, 1, 1), torch.linalg.inv(_RGB_TO_YCBCR))
