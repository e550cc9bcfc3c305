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


def _apply_matrix(x: Tensor, matrix: Tensor, out: Tensor | None = None) -> Tensor:
    """``matrix @ pixel`` for every pixel, as nine in-place multiply-adds
    (``einsum`` routes a 3 x 3 product through permuted copies and a batched
    matrix product, which costs more than the arithmetic); into ``out`` when given."""
    weights = matrix.tolist()
    channels = x.unbind(1)
    out = torch.empty_like(x) if out is None else out
    for row, target in zip(weights, out.unbind(1)):
        torch.mul(channels[0], row[0], out=target)
        target.add_(channels[1], alpha=row[1]).add_(channels[2], alpha=row[2])
    return out


def rgb_to_grey(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    grey = r * _GREY_WEIGHTS[0]
    return grey.add_(g, alpha=_GREY_WEIGHTS[1]).add_(b, alpha=_GREY_WEIGHTS[2]).unsqueeze(1)


def _pow_(positive: Tensor, exponent: float) -> Tensor:
    """``positive ** exponent`` in place as ``exp(exponent * log(x))``: torch's pow with a
    non-integer exponent took 4.3 ms for 3 x 384 x 512 on one thread, log and exp 2.0 ms
    (results within 1e-6 relative). Callers clamp the base above 0 first."""
    return positive.log_().mul_(exponent).exp_()


def srgb_to_linear(x: Tensor) -> Tensor:
    encoded = _pow_(x.clamp_min(0.04045).add_(0.055).div_(1.055), 2.4)
    return torch.where(x <= 0.04045, x / 12.92, encoded)


def linear_to_srgb(x: Tensor) -> Tensor:
    # Lab edits push values outside the gamut; odd-symmetric extension keeps them finite.
    magnitude = x.abs()
    encoded = _pow_(magnitude.clamp_min(0.0031308), 1 / 2.4).mul_(1.055).sub_(0.055)
    encoded = torch.where(magnitude <= 0.0031308, magnitude.mul_(12.92), encoded)
    return encoded.mul_(torch.sign(x))


# The white point is folded into the matrices so XYZ / white costs no extra pass.
_RGB_TO_XYZ_WHITE = _RGB_TO_XYZ / _WHITE_D65.view(3, 1)
_XYZ_WHITE_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ_WHITE)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_lab(x: Tensor) -> Tensor:
    xyz = _apply_matrix(srgb_to_linear(x), _RGB_TO_XYZ_WHITE)
    f = torch.where(xyz > _DELTA ** 3, _pow_(xyz.clamp_min(_DELTA ** 3), 1 / 3),
                    xyz.div_(3 * _DELTA ** 2).add_(4 / 29))
    fx, fy, fz = f.unbind(1)
    lab = torch.empty_like(f)
    lightness, a, b = lab.unbind(1)
    torch.mul(fy, 116, out=lightness).sub_(16)
    torch.sub(fx, fy, out=a).mul_(500)
    torch.sub(fy, fz, out=b).mul_(200)
    return lab


def lab_to_rgb(lab: Tensor) -> Tensor:
    lightness, a, b = lab.unbind(1)
    f = torch.empty_like(lab)
    fx, fy, fz = f.unbind(1)
    torch.add(lightness, 16, out=fy).div_(116)
    torch.add(fy, a, alpha=1 / 500, out=fx)
    torch.sub(fy, b, alpha=1 / 200, out=fz)
    xyz = torch.where(f > _DELTA, f.pow(3), f.sub_(4 / 29).mul_(3 * _DELTA ** 2))
    return linear_to_srgb(_apply_matrix(xyz, _XYZ_WHITE_TO_RGB))


def rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    # Elementwise maximum/minimum of the planes: max(1)/min(1) over three channels are reductions
    # without a vectorised CPU kernel (1.2 ms against 0.1 ms for 3 x 384 x 512 on one thread).
    hsv = torch.empty_like(x)
    hue, saturation, value = hsv.unbind(1)
    torch.maximum(torch.maximum(r, g, out=value), b, out=value)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sector = torch.where(value == r, ((g - b) / safe_chroma) % 6,
                         torch.where(value == g, (b - r) / safe_chroma + 2, (r - g) / safe_chroma + 4))
    torch.where(chroma > 0, sector / 6, torch.zeros_like(sector), out=hue)
    torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                torch.zeros_like(value), out=saturation)
    return hsv


_HSV_CHANNEL_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """``V - V*S*clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6H) mod 6`` and
    n = 5, 3, 1 for R, G, B: the closed form of the six-sector formula, for all
    channels at once. It is linear in S, so it extends to negative saturation
    exactly as the sector formula does, which KADID's level 5 of
    ``color_saturation_hsv`` (factor -0.4) relies on."""
    hue, saturation, value = hsv[:, :1], hsv[:, 1:2], hsv[:, 2:]
    k = (hue % 1.0).mul_(6).add(_HSV_CHANNEL_OFFSETS.to(hsv)).remainder_(6)
    weight = torch.minimum(k, 4 - k).clamp_(0, 1)
    return weight.mul_(saturation * value).neg_().add_(value)


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    return _apply_matrix(x, _RGB_TO_YCBCR).add_(_YCBCR_OFFSET.to(x).view(1, 3, 1, 1))


def ycbcr_to_rgb_(ycbcr: Tensor, out: Tensor | None = None) -> Tensor:
    """The inverse of :func:`rgb_to_ycbcr`, using ``ycbcr`` (overwritten) as its scratch; into ``out``
    when given."""
    return _apply_matrix(ycbcr.sub_(_YCBCR_OFFSET.to(ycbcr).view(1, 3, 1, 1)), _YCBCR_TO_RGB, out)
