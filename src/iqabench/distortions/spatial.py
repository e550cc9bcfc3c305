"""Spatial distortions: jitter, non-eccentricity patches, pixelation,
grey-level quantisation and colour blocks.

Departures from the MATLAB generator:

* ``quantization`` uses uniform thresholds j / (n + 1) instead of MATLAB
  ``multithresh`` (multi-level Otsu), which is not tractable for up to 20
  thresholds in scikit-image. As ``imnoisequantize``, n thresholds make n + 1
  classes, valued at the thresholds above them (0 for the lowest, 1 for the
  highest), then stretched to [0, 1] per image (the generator's ``mapmm``);
  ARNIQA's port makes n classes. Thresholds apply to each RGB channel, as
  ``imquantize`` on the colour image does.
* ``pixelate`` uses nearest-neighbour down- and up-sampling (as ARNIQA).
  MATLAB's ``imresize(I, z, 'nearest')`` makes ceil(z h) rows and samples
  pixel centres; the blocks here may sit half a pixel apart from MATLAB's.
* ``jitter`` resamples bilinearly; MATLAB's ``imscatter`` warps bicubically,
  which keeps a little more fine detail.
* Patch positions for ``non_eccentricity_patch`` and ``color_block`` are drawn
  from the explicit generator; patches are pasted in sequence, all images of a
  batch at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import memory
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
        grid = randn(generator, (n, h, w, 2), x.device, dtype=x.dtype).mul_(step).add_(identity)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out


def _patch_copies(x: Tensor, counts: list[int], draws: int, sources: Tensor, targets: Tensor,
                  size: int, fill: Tensor | None = None, batched: bool | None = None,
                  out: Tensor | None = None) -> Tensor:
    """Paste ``size`` x ``size`` patches into a copy of ``x`` (``out``, which may be ``x``
    itself: then in place), image by image in draw order.

    ``draws`` x N rows of (top, left) ``targets``; each patch is either the
    current content at ``sources`` (copied before it is pasted, so overlapping
    copies read what the previous pastes left) or the colour ``fill`` (draws x
    N x 3). Image ``i`` takes its first ``counts[i]`` draws.

    On the CPU this is a loop of NumPy slice copies (a 16 x 16 patch is 3 KiB;
    the batched advanced-indexing path took 2 ms per draw on 32 images, 4 ms
    per image at level 3, against 1.2 ms per image for ARNIQA's slice loop).
    On an accelerator it is one batched gather and scatter per draw, where images past their count copy a patch onto itself
    (no host sync: nothing depends on which images are still pasting).
    ``batched`` forces one or the other (tests compare them on the CPU).
    """
    out = memory.clone(x) if out is None else (out if out is x else out.copy_(x))
    if not (x.device.type != "cpu" if batched is None else batched):
        pixels = out.numpy()  # shares memory; NumPy slicing costs a tenth of a tensor slice's overhead
        target_list = targets.tolist()
        source_list = sources.tolist()
        colours = None if fill is None else fill.numpy()[..., None, None]
        for image, count in enumerate(counts):
            canvas = pixels[image]
            for k in range(count):
                top, left = target_list[k][image]
                if colours is None:
                    src_top, src_left = source_list[k][image]
                    patch = canvas[:, src_top:src_top + size, src_left:src_left + size].copy()
                else:
                    patch = colours[k, image]
                canvas[:, top:top + size, left:left + size] = patch
        return out
    offsets = torch.arange(size, device=x.device)
    batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
    live = torch.arange(draws, device=x.device).view(-1, 1) < torch.tensor(counts, device=x.device).view(1, -1)
    for k in range(draws):
        # Past an image's count, its target becomes its source: the paste changes nothing.
        top_left = torch.where(live[k].view(-1, 1), targets[k], sources[k])
        rows = (top_left[:, 0].view(-1, 1) + offsets).unsqueeze(2)
        cols = (top_left[:, 1].view(-1, 1) + offsets).unsqueeze(1)
        if fill is None:
            src_rows = (sources[k, :, 0].view(-1, 1) + offsets).unsqueeze(2)
            src_cols = (sources[k, :, 1].view(-1, 1) + offsets).unsqueeze(1)
            patch = out[batch, :, src_rows, src_cols]
        else:
            current = out[batch, :, rows, cols]
            patch = torch.where(live[k].view(-1, 1, 1, 1), fill[k].view(-1, 1, 1, 3), current)
        out[batch, :, rows, cols] = patch
    return out


def non_eccentricity_patch(x: Tensor, params: list[float], generator: torch.Generator,
                           out: Tensor | None = None) -> Tensor:
    """Copy ``pnum`` 16 x 16 patches to a spot up to 8 px away (``imnoneccentricity``)."""
    _require_size(x, _ECC_PATCH + 2 * _ECC_RADIUS, "non_eccentricity_patch")
    n, _, h, w = x.shape
    counts = [int(p) for p in params]
    draws = max(counts)
    # One draw for every (patch, image), whether or not the image uses it, so an
    # image's patches do not depend on the other images' levels.
    draw = rand(generator, (draws, n, 4), x.device).to(torch.float64)
    top = torch.round(draw[..., 0] * (h - _ECC_PATCH - 2 * _ECC_RADIUS)) + _ECC_RADIUS
    left = torch.round(draw[..., 1] * (w - _ECC_PATCH - 2 * _ECC_RADIUS)) + _ECC_RADIUS
    new_top = torch.round((draw[..., 2] - 0.5) * _ECC_RADIUS + top)
    new_left = torch.round((draw[..., 3] - 0.5) * _ECC_RADIUS + left)
    sources = torch.stack((top, left), -1).long()
    targets = torch.stack((new_top, new_left), -1).long()
    return _patch_copies(x, counts, draws, sources, targets, _ECC_PATCH, out=out)


def _group_by_parameter(x: Tensor, params: list[float], apply, out: Tensor | None = None) -> Tensor:
    """Run ``apply(images, parameter, out)`` once per distinct parameter (at most 5)."""
    distinct = sorted(set(params))
    if len(distinct) == 1:  # the usual case: no gather and scatter, the result straight into ``out``
        return apply(x, distinct[0], out)
    out = torch.empty_like(x) if out is None else out
    values = torch.tensor(params)
    for value in distinct:
        index = torch.nonzero(values == value).flatten().to(x.device)
        out[index] = apply(x[index], value, None)
    return out


def pixelate(x: Tensor, params: list[float], generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    h, w = x.shape[-2:]

    def apply(images: Tensor, strength: float, dest: Tensor | None) -> Tensor:
        scale = 0.95 - strength ** 0.6
        small = F.interpolate(images, size=(max(1, int(h * scale)), max(1, int(w * scale))), mode="nearest")
        if dest is None:
            return F.interpolate(small, size=(h, w), mode="nearest")
        # F.interpolate's own kernel, writing into the engine's output batch (one pass fewer).
        return torch.ops.aten.upsample_nearest2d.out(small, [h, w], None, None, out=dest)

    return _group_by_parameter(x, params, apply, out)


def quantization(x: Tensor, params: list[float], generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    def apply(images: Tensor, levels: float, dest: Tensor | None) -> Tensor:
        # imnoisequantize: ``levels`` thresholds t_j (here j / (levels + 1)) make levels + 1 classes, valued
        # [0, t_2, ..., t_levels, 1] (imquantize's ``value``): class c (thresholds strictly below x,
        # ceil((levels + 1) x) - 1) maps to (c + 1) / (levels + 1), class 0 to 0. Elementwise passes:
        # torch.bucketize's per-element binary search took 6.7 ms for 3 x 384 x 512 on one thread, against ~0.4 ms.
        n = int(levels) + 1
        classes = torch.mul(images, n, out=torch.empty_like(images) if dest is None else dest)
        classes.ceil_().clamp_(1, n)  # c + 1
        return min_max_per_image_(classes.masked_fill_(classes == 1, 0))

    return _group_by_parameter(x, params, apply, out)


def color_block(x: Tensor, params: list[float], generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    """Paste ``pnum`` flat 32 x 32 blocks of random colour (``imcolorblock``)."""
    _require_size(x, _BLOCK, "color_block")
    n, _, h, w = x.shape
    counts = [int(p) for p in params]
    draws = max(counts)
    draw = rand(generator, (draws, n, 5), x.device)
    top = torch.floor(draw[..., 0] * (h - _BLOCK))
    left = torch.floor(draw[..., 1] * (w - _BLOCK))
    targets = torch.stack((top, left), -1).long()
    return _patch_copies(x, counts, draws, targets, targets, _BLOCK, fill=draw[..., 2:].to(x.dtype), out=out)
