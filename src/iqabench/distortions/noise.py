"""Noise: additive white (RGB and YCbCr), impulse, multiplicative, and denoised noise.

Follows MATLAB ``imnoise``: Gaussian noise of the given variance, clipped to
[0, 1] in the space it was added in; salt & pepper flips each sample with
probability ``d`` (half to 0, half to 1); ``speckle`` adds ``x * n`` with
uniform zero-mean noise of the given variance (ARNIQA's port uses Gaussian
noise here; we keep MATLAB's uniform). ``white_noise_ycbcr`` adds the noise in
MATLAB's BT.601 studio-range YCbCr.

``denoise`` departs from the reference: KADID denoises the noisy image with
CBM3D, which has no maintained wheel that fits this project. We use
scikit-image's non-local means (``denoise_nl_means``, fast mode, patch 5,
search distance 6, ``h = 0.8 * sigma`` as scikit-image recommends, known
sigma), which leaves the same kind of smeared texture and residual blotches.
It runs per image on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skimage.restoration import denoise_nl_means
from torch import Tensor

from .colorspace import rgb_to_ycbcr, ycbcr_to_rgb
from .filters import rand, randn


def _per_image(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def white_noise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    noise = randn(generator, x.shape, x.device).to(x.dtype) * _per_image(params, x).sqrt()
    return (x + noise).clamp(0, 1)


def white_noise_ycbcr(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    noise = randn(generator, x.shape, x.device).to(x.dtype) * _per_image(params, x).sqrt()
    return ycbcr_to_rgb((rgb_to_ycbcr(x) + noise).clamp(0, 1))


def impulse_noise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    draw = rand(generator, x.shape, x.device).to(x.dtype)
    density = _per_image(params, x)
    out = torch.where(draw < density / 2, torch.zeros_like(x), x)
    return torch.where((draw >= density / 2) & (draw < density), torch.ones_like(x), out)


def multiplicative_noise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    uniform = rand(generator, x.shape, x.device).to(x.dtype) - 0.5
    return (x + torch.sqrt(12 * _per_image(params, x)) * x * uniform).clamp(0, 1)


def denoise(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    noisy = white_noise(x, params, generator).permute(0, 2, 3, 1).cpu().double().numpy()
    outputs = []
    for image, variance in zip(noisy, params):
        sigma = math.sqrt(variance)
        outputs.append(denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, fast_mode=True,
                                        patch_size=5, patch_distance=6, channel_axis=-1))
    stacked = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)
    return stacked.to(device=x.device, dtype=x.dtype)
