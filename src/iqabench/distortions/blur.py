"""Blur: Gaussian, lens (disk) and motion blur, one grouped convolution per batch.

Departures from the MATLAB generator: the disk kernel is integrated by
supersampling instead of analytically (see ``filters.disk_kernel``), and the
motion kernel is an anti-aliased line rather than a copy of ``fspecial``'s
construction; both give the same blur extent and normalisation. The motion
angle is drawn uniformly in [0, 180) degrees per image from the generator.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .filters import disk_kernel, filter_2d, gaussian_blur_per_image, motion_kernel, rand, stack_kernels


def gaussian_blur(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    return gaussian_blur_per_image(x, params)


def lens_blur(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    return filter_2d(x, stack_kernels([disk_kernel(r) for r in params], x))


def motion_blur(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    angles = (rand(generator, (len(params),), "cpu") * 180).tolist()
    return filter_2d(x, stack_kernels([motion_kernel(l, a) for l, a in zip(params, angles)], x))
