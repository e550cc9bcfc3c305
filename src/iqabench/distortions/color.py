"""Colour distortions: diffusion, shift, quantisation and two saturation changes.

Against the MATLAB generator (KADIS-700k's ``matlab_code_imdistort``):

* ``color_diffusion`` is ``imcolordiffuse``, ``imcolorblur(I, 1.5 * amount + 2,
  amount)``: Gaussian-diffused a*b* times ``amount``, which over-saturates
  strongly from level 2 on (as ARNIQA's port).
* ``color_shift`` weights the shift by the edge map as ``imcolorshift`` does:
  stretched to [0, 1], truncated below 0.1 (weak edges are not shifted),
  clipped to the 1st/99th percentile (nearest rank) and mapped back to [0, 1]
  (``ps2``). ARNIQA's port skips the truncation and clips without the
  re-stretch, which leaves the shift almost invisible even at 12 px.
* Departure: outputs stay in float; MATLAB (and ARNIQA's port) round or
  truncate to 8 bit after Lab edits. Quantisation is a storage step, not the
  distortion, and dropping it keeps compositions from accumulating rounding.
* Departure: ``color_saturation_hsv`` at a negative factor (level 5) clips to
  [0, 1]; MATLAB's ``hsv2rgb`` divides by the image's maximum instead (a global
  rescale), which differs by a few grey levels where a colour leaves the gamut.
* ARNIQA's port swaps R and B before its Lab conversion; we convert true sRGB,
  as MATLAB's ``rgb2lab`` does.
* Departure: ``color_quantization`` uses Pillow's median-cut palette then Floyd-Steinberg
  dithering in place of MATLAB ``rgb2ind(im, n, 'dither')`` (minimum-variance
  palette). The palette is cut from a regular grid of about 16k of the
  image's own pixels (every ``stride``-th row and column) rather than from all
  of them: median cut only needs the colour distribution, which the grid
  samples closely, and the full-image cut was 95 % of the time. Every pixel is
  then dithered to that palette. It runs per image on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .colorspace import hsv_to_rgb, lab_to_rgb, rgb_to_grey, rgb_to_hsv, rgb_to_lab
from .filters import gaussian_blur_per_image, min_max_per_image_, rand


def _per_image(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def color_diffusion(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    lab = rgb_to_lab(x)
    diffused_ab = gaussian_blur_per_image(lab[:, 1:], [1.5 * amount + 2 for amount in params])
    lab[:, 1:] = diffused_ab.mul_(_per_image(params, x))
    return lab_to_rgb(lab)


def _shift_replicate(channel: Tensor, shift_rows: Tensor, shift_cols: Tensor) -> Tensor:
    """Move each image's content by (rows, cols) pixels, replicating the border."""
    n, h, w = channel.shape
    rows = (torch.arange(h, device=channel.device) - shift_rows.view(-1, 1)).clamp(0, h - 1)
    cols = (torch.arange(w, device=channel.device) - shift_cols.view(-1, 1)).clamp(0, w - 1)
    batch = torch.arange(n, device=channel.device).view(-1, 1, 1)
    return channel[batch, rows.unsqueeze(2), cols.unsqueeze(1)]


def _percentile(x: Tensor, percent: float) -> Tensor:
    """Nearest-rank percentile of each image (``kthvalue`` has no size limit,
    unlike ``torch.quantile``, which refuses inputs above 16M elements)."""
    flat = x.flatten(1)
    rank = min(max(round(flat.shape[1] * percent / 100), 1), flat.shape[1])
    return flat.kthvalue(rank, dim=1).values.view(-1, *[1] * (x.ndim - 1))


def color_shift(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    """Shift the green channel by ``amount`` px in a random direction, blended
    in where the (blurred) luminance gradient is strong, as in ``imcolorshift``."""
    grey = rgb_to_grey(x)[:, 0]
    grad_rows, grad_cols = torch.gradient(grey, dim=(1, 2))
    magnitude = grad_rows.square_().add_(grad_cols.square_()).sqrt_().unsqueeze(1)
    # imcolorshift: e = ps2(truncate(mapmm(imgaussfilt(e, 4)), 0.1, 1)): weak edges get no shift at all.
    edges = min_max_per_image_(gaussian_blur_per_image(magnitude, [4.0] * len(params))).clamp_(0.1, 1)
    low, high = _percentile(edges, 1.0), _percentile(edges, 99.0)
    edges = edges.sub_(low).div_((high - low).clamp_min(1e-12)).clamp_(0, 1)

    direction = rand(generator, (len(params), 2), x.device).to(x.dtype)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    shift = torch.round(direction * torch.tensor(params, dtype=x.dtype, device=x.device).view(-1, 1)).long()
    green = x[:, 1]
    shifted = _shift_replicate(green, shift[:, 1], shift[:, 0])
    weight = edges[:, 0]
    out = x.clone()
    out[:, 1] = shifted.sub_(green).mul_(weight).add_(green)
    return out


_PALETTE_SAMPLE_PIXELS = 16384


def color_quantization(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    pixels = x.clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    height, width = pixels.shape[1:3]
    stride = max(1, math.isqrt(height * width // _PALETTE_SAMPLE_PIXELS))
    outputs = []
    for image, colours in zip(pixels, params):
        sample = Image.fromarray(np.ascontiguousarray(image[::stride, ::stride]), "RGB")
        palette = sample.quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT)
        dithered = Image.fromarray(image, "RGB").quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        outputs.append(np.asarray(dithered.convert("RGB")))
    stacked = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)
    return stacked.to(device=x.device, dtype=x.dtype).div_(255)


def color_saturation_hsv(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 1:2].mul_(_per_image(params, x))
    return hsv_to_rgb(hsv)


def color_saturation_lab(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    lab = rgb_to_lab(x)
    lab[:, 1:].mul_(_per_image(params, x))
    return lab_to_rgb(lab)
