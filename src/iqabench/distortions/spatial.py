"""Spatial distortions: jitter, non-eccentricity patches, pixelation,
grey-level quantisation and colour blocks.

Departures from the MATLAB generator:

* ``quantization`` uses uniform thresholds i/n (as ARNIQA's port does)
  instead of MATLAB ``multithresh`` (multi-level Otsu), which is not tractable
  for up to 19 thresholds in scikit-image; classes are then stretched to
  [0, 1] per image (``mapmm``) exactly as in the reference. Thresholds apply to
  each RGB channel, as ``imquantize`` on the colour image does.
* ``pixelate`` uses nearest-neighbour down- and up-sampling (as ARNIQA).
* Patch positions for ``non_eccentricity_patch`` and ``color_block`` are drawn
  from the explicit generator; patches are pasted in sequence, all images of a
  batch at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .filters import min_max_per_image_, rand, randn

_JITTER_ITERATIONS = 5
_ECC_PATCH = 16
_ECC_RADIUS = 16
_BLOCK = 32


def _per_image(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _require_size(x: Tensor, minimum: int, name: str) -> None:
    if min(x.shape[-2:]) < minimum:
        raise ValueError(f"{name} needs images of at least {minimum} x {minimum} pixels, got "
                         f"{x.shape[-2]} x {x.shape[-1]}; crop or resize larger images")


def jitter(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    """Scatter pixels by Gaussian displacements, 5 times (``imscatter``), with
    bilinear sampling and replicated borders.

    The displacement field is drawn directly in ``grid_sample``'s N x H x W x 2
    (column, row) layout and scaled to normalised units in place, so each round
    costs one draw, two in-place passes and the resampling."""
    n, _, h, w = x.shape
    amount = _per_image(params, x).view(-1, 1, 1, 1)
    # Pixel -> normalised [-1, 1] units (align_corners=True); the minus sign
    # moves content by +shift, as sampling at (position - shift) does.
    unit = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], dtype=x.dtype, device=x.device)
    step = amount * -unit
    cols = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device) if w > 1 else torch.full((1,), -1.0)
    rows = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device) if h > 1 else torch.full((1,), -1.0)
    identity = torch.stack(torch.meshgrid(cols.to(x), rows.to(x), indexing="xy"), -1).unsqueeze(0)
    out = x
    for _ in range(_JITTER_ITERATIONS):
        grid = randn(generator, (n, h, w, 2), x.device).to(x.dtype).mul_(step).add_(identity)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out


def _paste(out: Tensor, active: Tensor, top: Tensor, left: Tensor, patch: Tensor, size: int) -> None:
    """Write ``patch`` (A x 3 x size x size) at (top, left) in the active images."""
    offsets = torch.arange(size, device=out.device)
    rows = (top.view(-1, 1) + offsets).unsqueeze(2)
    cols = (left.view(-1, 1) + offsets).unsqueeze(1)
    out[active.view(-1, 1, 1), :, rows, cols] = patch.permute(0, 2, 3, 1)


def non_eccentricity_patch(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    """Copy ``pnum`` 16 x 16 patches to a spot up to 8 px away (``imnoneccpatch``)."""
    _require_size(x, _ECC_PATCH + 2 * _ECC_RADIUS, "non_eccentricity_patch")
    n, _, h, w = x.shape
    counts = torch.tensor([int(p) for p in params], device=x.device)
    out = x.clone()
    offsets = torch.arange(_ECC_PATCH, device=x.device)
    for index in range(int(counts.max())):
        draw = rand(generator, (n, 4), x.device).to(torch.float64)
        active = torch.nonzero(counts > index).flatten()
        draw = draw[active]
        top = torch.round(draw[:, 0] * (h - _ECC_PATCH - 2 * _ECC_RADIUS)).long() + _ECC_RADIUS
        left = torch.round(draw[:, 1] * (w - _ECC_PATCH - 2 * _ECC_RADIUS)).long() + _ECC_RADIUS
        rows = (top.view(-1, 1) + offsets).unsqueeze(2)
        cols = (left.view(-1, 1) + offsets).unsqueeze(1)
        patch = out[active.view(-1, 1, 1), :, rows, cols].permute(0, 3, 1, 2)
        new_top = torch.round((draw[:, 2] - 0.5) * _ECC_RADIUS + top).long()
        new_left = torch.round((draw[:, 3] - 0.5) * _ECC_RADIUS + left).long()
        _paste(out, active, new_top, new_left, patch, _ECC_PATCH)
    return out


def _group_by_parameter(x: Tensor, params: list[float], apply) -> Tensor:
    """Run ``apply(images, parameter)`` once per distinct parameter (at most 5)."""
    out = torch.empty_like(x)
    values = torch.tensor(params)
    for value in sorted(set(params)):
        index = torch.nonzero(values == value).flatten().to(x.device)
        out[index] = apply(x[index], value)
    return out


def pixelate(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]

    def apply(images: Tensor, strength: float) -> Tensor:
        scale = 0.95 - strength ** 0.6
        small = F.interpolate(images, size=(max(1, int(h * scale)), max(1, int(w * scale))), mode="nearest")
        return F.interpolate(small, size=(h, w), mode="nearest")

    return _group_by_parameter(x, params, apply)


def quantization(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    def apply(images: Tensor, levels: float) -> Tensor:
        thresholds = torch.arange(1, int(levels), dtype=images.dtype, device=images.device) / int(levels)
        classes = torch.bucketize(images.contiguous(), thresholds, out_int32=True).to(images.dtype)
        return min_max_per_image_(classes)

    return _group_by_parameter(x, params, apply)


def color_block(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    """Paste ``pnum`` flat 32 x 32 blocks of random colour (``imcolorblock``)."""
    _require_size(x, _BLOCK, "color_block")
    n, _, h, w = x.shape
    counts = torch.tensor([int(p) for p in params], device=x.device)
    out = x.clone()
    for index in range(int(counts.max())):
        draw = rand(generator, (n, 5), x.device)
        active = torch.nonzero(counts > index).flatten()
        draw = draw[active]
        top = torch.floor(draw[:, 0] * (h - _BLOCK)).long()
        left = torch.floor(draw[:, 1] * (w - _BLOCK)).long()
        colour = draw[:, 2:].to(x.dtype).view(-1, 3, 1, 1).expand(-1, 3, _BLOCK, _BLOCK)
        _paste(out, active, top, left, colour, _BLOCK)
    return out
