"""Input checks, the type registry and :func:`distort` / :func:`apply_sequence`.

Every distortion function takes the float32 sub-batch of images whose level is
above 0, the per-image parameter values from ``LEVEL_PARAMETERS`` and the
generator, and returns the distorted sub-batch; :func:`distort` scatters it
back, clamps to [0, 1] and restores the caller's dtype, so level 0 is the
identity bit for bit.
"""
from __future__ import annotations

import operator
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import blur, brightness, color, compression, noise, sharpness, spatial
from .params import DISTORTION_TYPES, LEVEL_PARAMETERS, NUM_LEVELS

DistortionFn = Callable[[Tensor, list, torch.Generator], Tensor]

DISTORTION_FUNCTIONS: dict[str, DistortionFn] = {
    "gaussian_blur": blur.gaussian_blur,
    "lens_blur": blur.lens_blur,
    "motion_blur": blur.motion_blur,
    "color_diffusion": color.color_diffusion,
    "color_shift": color.color_shift,
    "color_quantization": color.color_quantization,
    "color_saturation_hsv": color.color_saturation_hsv,
    "color_saturation_lab": color.color_saturation_lab,
    "jpeg2000": compression.jpeg2000,
    "jpeg": compression.jpeg,
    "white_noise": noise.white_noise,
    "white_noise_ycbcr": noise.white_noise_ycbcr,
    "impulse_noise": noise.impulse_noise,
    "multiplicative_noise": noise.multiplicative_noise,
    "denoise": noise.denoise,
    "brighten": brightness.brighten,
    "darken": brightness.darken,
    "mean_shift": brightness.mean_shift,
    "jitter": spatial.jitter,
    "non_eccentricity_patch": spatial.non_eccentricity_patch,
    "pixelate": spatial.pixelate,
    "quantization": spatial.quantization,
    "color_block": spatial.color_block,
    "high_sharpen": sharpness.high_sharpen,
    "contrast_change": sharpness.contrast_change,
}
assert tuple(DISTORTION_FUNCTIONS) == DISTORTION_TYPES

# Random types: the only ones whose output depends on the generator.
RANDOM_TYPES: frozenset[str] = frozenset({
    "motion_blur", "color_shift", "white_noise", "white_noise_ycbcr", "impulse_noise",
    "multiplicative_noise", "denoise", "jitter", "non_eccentricity_patch", "color_block",
})

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_images(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty N x 3 x H x W float batch in [0, 1]."""
    if not isinstance(images, Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape N x 3 x H x W, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N x 3 x H x W), got shape {tuple(images.shape)}; "
                         "add a batch dimension with images.unsqueeze(0)")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 (RGB) channels in dim 1, got {images.shape[1]} "
                         f"(shape {tuple(images.shape)}); convert grey or RGBA images to RGB first")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images is empty (shape {tuple(images.shape)}); pass at least one image")
    if images.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"images must be float32/float16/bfloat16 in [0, 1], got dtype {images.dtype}; "
                         "convert 8-bit images with images.float() / 255")
    low, high = float(images.min()), float(images.max())
    if not (0.0 <= low and high <= 1.0):  # also false for NaN
        raise ValueError(f"image values must lie in [0, 1], found range [{low:.4g}, {high:.4g}]; "
                         "scale 8-bit data by 1/255 and clamp before distorting")


def check_distortion(dist: str) -> DistortionFn:
    if dist not in DISTORTION_FUNCTIONS:
        raise ValueError(f"unknown distortion {dist!r}; valid names: {', '.join(DISTORTION_TYPES)}")
    return DISTORTION_FUNCTIONS[dist]


def check_levels(level: int | Tensor, batch_size: int) -> Tensor:
    """Per-image levels as a CPU int64 tensor of length ``batch_size``."""
    if isinstance(level, Tensor):
        if level.dtype.is_floating_point or level.dtype.is_complex or level.dtype == torch.bool:
            raise ValueError(f"level tensor must have an integer dtype, got {level.dtype}")
        if level.ndim != 1 or level.shape[0] != batch_size:
            raise ValueError(f"level tensor must have shape ({batch_size},) (one level per image), "
                             f"got {tuple(level.shape)}")
        levels = level.detach().to("cpu", torch.int64)
    else:
        if isinstance(level, bool):
            raise ValueError(f"level must be an int 0..{NUM_LEVELS}, got {level!r}")
        try:
            scalar = operator.index(level)
        except TypeError:
            raise ValueError(f"level must be an int 0..{NUM_LEVELS} or an integer tensor of per-image "
                             f"levels, got {level!r}") from None
        levels = torch.full((batch_size,), scalar, dtype=torch.int64)
    bad = (levels < 0) | (levels > NUM_LEVELS)
    if bool(bad.any()):
        raise ValueError(f"level values must be in 0..{NUM_LEVELS} (0 = pristine), got "
                         f"{sorted(set(levels[bad].tolist()))}")
    return levels


def default_generator(device: torch.device) -> torch.Generator:
    """A fresh, randomly seeded generator: callers who pass none get varied but
    not reproducible output, and the global RNG is never touched."""
    generator = torch.Generator(device=device)
    generator.seed()
    return generator


def distort(images: Tensor, dist: str, level: int | Tensor,
            generator: torch.Generator | None = None) -> Tensor:
    """Apply one KADID distortion at ``level`` (int or per-image tensor, 0 = identity).

    ``images`` is N x 3 x H x W float in [0, 1] on any device; the result has the
    same shape, dtype and device and is clamped to [0, 1]. Randomness comes only
    from ``generator``; the same seed gives the same images on the same device.
    """
    check_images(images)
    function = check_distortion(dist)
    levels = check_levels(level, images.shape[0])
    if generator is None:
        generator = default_generator(images.device)
    active = torch.nonzero(levels > 0).flatten()
    if active.numel() == 0:
        return images.clone()
    table = LEVEL_PARAMETERS[dist]
    params = [table[int(lv) - 1] for lv in levels[active]]
    everything = active.numel() == images.shape[0]
    subset = images if everything else images[active.to(images.device)]
    distorted = _in_chunks(function, subset.to(torch.float32), params, generator,
                           dist in WHOLE_BATCH_TYPES)
    if everything:
        return distorted.to(images.dtype)
    out = images.clone()
    out[active.to(images.device)] = distorted.to(images.dtype)
    return out


def chunk_size(height: int, width: int) -> int:
    """Images per call to a distortion function: about CHUNK_PIXELS pixels.

    Every temporary of a chunk then stays below glibc's largest mmap threshold
    (32 MiB), so freed buffers are reused instead of being handed back to the
    kernel and page-faulted in again; on a CPU this halves the time of the
    per-pixel types. The size depends only on the image size, so random types
    draw the same numbers for the same batch on every machine.
    """
    return max(1, CHUNK_PIXELS // (height * width))


CHUNK_PIXELS = 1 << 20


# Types that loop in Python over patches or images and keep no full-size
# temporaries: chunking them would only repeat the loop once per chunk.
WHOLE_BATCH_TYPES: frozenset[str] = frozenset({
    "non_eccentricity_patch", "color_block", "jpeg2000", "color_quantization", "mean_shift"})


def _in_chunks(function: DistortionFn, images: Tensor, params: list, generator: torch.Generator,
               whole_batch: bool) -> Tensor:
    step = chunk_size(*images.shape[-2:])
    if whole_batch or images.shape[0] <= step:
        return function(images, params, generator).clamp_(0, 1)
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], step):
        stop = start + step
        out[start:stop] = function(images[start:stop], params[start:stop], generator).clamp_(0, 1)
    return out


def apply_sequence(images: Tensor, steps: Sequence[tuple[str, int | Tensor]],
                   generator: torch.Generator | None = None) -> Tensor:
    """Apply ``(type, level)`` steps in order; each output is clamped before the next step."""
    check_images(images)
    for position, step in enumerate(steps):
        if not (isinstance(step, (tuple, list)) and len(step) == 2):
            raise ValueError(f"step {position} must be a (distortion, level) pair, got {step!r}")
        check_distortion(step[0])
        check_levels(step[1], images.shape[0])
    if generator is None:
        generator = default_generator(images.device)
    out = images
    for dist, level in steps:
        out = distort(out, dist, level, generator)
    return out if out is not images else images.clone()
