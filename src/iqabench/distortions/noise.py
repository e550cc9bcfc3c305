"""Noise: additive white (RGB and YCbCr), impulse, multiplicative, and denoised noise.

Follows MATLAB ``imnoise``: Gaussian noise of the given variance, clipped to
[0, 1] in the space it was added in; salt & pepper flips each sample with
probability ``d`` (half to 0, half to 1); ``speckle`` adds ``x * n`` with
uniform zero-mean noise of the given variance (ARNIQA's port uses Gaussian
noise here; we keep MATLAB's uniform). ``white_noise_ycbcr`` adds the noise in
MATLAB's BT.601 studio-range YCbCr.

``denoise`` departs from the reference: the KADIS generator (``imdenoise.m``)
denoises each channel of the noisy image with MATLAB's pretrained DnCNN
(``denoisingNetwork('DnCNN')``), whose weights ship with no maintained wheel
and which nothing here may download. We use non-local means written in torch so the whole batch is denoised at once:
3 x 3 patches, a 7 x 7 search window, the known noise sigma, and
scikit-image's fast-mode weights ``exp(-max(d2 - 2 sigma^2, 0) / h^2)`` with
``h = 0.8 sigma`` (``d2`` the mean squared patch difference over the three
channels), borders replicated. Like any denoiser at these noise levels
(variances 0.01..0.15, MATLAB's table) it leaves smeared texture and residual blotches; the small
window (scikit-image's default is 5 x 5 patches in a 13 x 13 window, 8x the
work) is what keeps it usable inside a training loop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .colorspace import rgb_to_ycbcr, ycbcr_to_rgb_
from .filters import rand, randn


def _per_image(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def _scale_and_add(noise: Tensor, variances: list[float], x: Tensor) -> Tensor:
    """``noise * sqrt(variance) + x`` in place: one fused pass when the chunk shares
    one variance (the usual case), else a per-image multiply then the add."""
    if len(set(variances)) == 1:
        return torch.add(x, noise, alpha=math.sqrt(variances[0]), out=noise)
    return noise.mul_(_per_image(variances, x).sqrt()).add_(x)


def white_noise(x: Tensor, params: list[float], generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    noise = randn(generator, x.shape, x.device, out=out, dtype=x.dtype)
    return _scale_and_add(noise, params, x).clamp_(0, 1)


def white_noise_ycbcr(x: Tensor, params: list[float], generator: torch.Generator,
                      out: Tensor | None = None) -> Tensor:
    noise = randn(generator, x.shape, x.device, dtype=x.dtype)
    noisy = _scale_and_add(noise, params, rgb_to_ycbcr(x)).clamp_(0, 1)
    return ycbcr_to_rgb_(noisy, out).clamp_(0, 1)


def impulse_noise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    draw = rand(generator, x.shape, x.device).to(x.dtype)
    density = _per_image(params, x)
    hit = draw < density
    # Among hit samples, the lower half of the range is pepper (0), the upper salt (1).
    return torch.where(hit, (draw >= density / 2).to(x.dtype), x)


def multiplicative_noise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    # x + x * (u - 0.5) * s as x * (u * s + 1 - s / 2): three passes instead of five.
    uniform = rand(generator, x.shape, x.device).to(x.dtype)
    # A Python scalar when the chunk shares one level: no broadcast tensor per pass.
    scale = math.sqrt(12 * params[0]) if len(set(params)) == 1 else torch.sqrt(12 * _per_image(params, x))
    return uniform.mul_(scale).add_(1 - scale / 2).mul_(x).clamp_(0, 1)


_NLM_PATCH_RADIUS = 1
_NLM_SEARCH_RADIUS = 3
_NLM_H_PER_SIGMA = 0.8


def _box_sum(x: Tensor, radius: int) -> Tensor:
    """Sum over (2r+1) x (2r+1) windows, valid part only, as shifted-slice adds
    (``avg_pool2d`` with stride 1 is several times slower on the CPU)."""
    size = 2 * radius + 1
    h, w = x.shape[-2] - 2 * radius, x.shape[-1] - 2 * radius
    rows = x[..., :h, :].clone()
    for offset in range(1, size):
        rows.add_(x[..., offset:offset + h, :])
    out = rows[..., :w].clone()
    for offset in range(1, size):
        out.add_(rows[..., offset:offset + w])
    return out


def non_local_means(noisy: Tensor, sigma: Tensor) -> Tensor:
    """Denoise N x C x H x W ``noisy`` images with per-image noise ``sigma`` (N x 1 x 1 x 1)."""
    n, c, h, w = noisy.shape
    search, patch = _NLM_SEARCH_RADIUS, _NLM_PATCH_RADIUS
    margin = search + patch
    padded = F.pad(noisy, (margin,) * 4, mode="replicate")
    span_h, span_w = h + 2 * patch, w + 2 * patch
    centre = padded[..., search:search + span_h, search:search + span_w]
    variance = sigma.square()
    # Sums over channels and patch stand in for means, so the thresholds scale by their count.
    samples = c * (2 * patch + 1) ** 2
    bias = 2 * samples * variance
    inverse_h2 = 1 / (samples * _NLM_H_PER_SIGMA ** 2 * variance)
    weighted = torch.zeros_like(noisy)
    total_weight = torch.zeros((n, 1, h, w), dtype=noisy.dtype, device=noisy.device)
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            shifted = padded[..., search + dy:search + dy + span_h, search + dx:search + dx + span_w]
            distance = _box_sum((shifted - centre).square_().sum(1, keepdim=True), patch)
            # Capping the exponent at 50 (weights below 2e-22, nothing next to the
            # centre's 1) keeps exp out of the denormal range, where it is 10x slower.
            weight = distance.sub_(bias).clamp_min_(0).mul_(inverse_h2).clamp_max_(50).neg_().exp_()
            weighted.addcmul_(weight, shifted[..., patch:patch + h, patch:patch + w])
            total_weight.add_(weight)
    return weighted.div_(total_weight)


def denoise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    noisy = white_noise(x, params, generator)
    return non_local_means(noisy, _per_image(params, x).sqrt())
