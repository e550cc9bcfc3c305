"""Input checks, the function map (from :mod:`.registry`) and :func:`distort` / :func:`apply_sequence`.

Every distortion function takes a float32 chunk of the images whose level is
above 0, the per-image parameter values from ``LEVEL_PARAMETERS`` and the
generator, and returns the distorted chunk; :func:`distort` assembles the
chunks, clamps to [0, 1] and restores the caller's dtype, so level 0 is the
identity bit for bit. Float64 images are distorted in float64: the byte-stable
CPU stages use it, since its last-bit differences between CPU models stay
~1e-13 of an 8-bit grey level, where float32's flip stored pixels.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from torch import Tensor

from . import memory
from .params import DISTORTION_TYPES, LEVEL_PARAMETERS, NUM_LEVELS
from .registry import DISTORTIONS, DistortionFn

DISTORTION_FUNCTIONS: dict[str, DistortionFn] = {d.name: d.function for d in DISTORTIONS}

# Random types: the only ones whose output depends on the generator.
RANDOM_TYPES: frozenset[str] = frozenset(d.name for d in DISTORTIONS if d.random)

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_images(images: Tensor, values: bool = True) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty N x 3 x H x W float batch in [0, 1]
    (``values=False``: everything but the range, which :func:`check_range` then checks)."""
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
        raise ValueError(f"images must be float32/float64/float16/bfloat16 in [0, 1], got dtype {images.dtype}; "
                         "convert 8-bit images with images.float() / 255")
    if values:
        check_range(images)


def check_range(images: Tensor) -> None:
    low, high = (float(v) for v in torch.aminmax(images))  # one pass instead of two
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
    check_images(images, values=False)
    check_distortion(dist)
    levels = check_levels(level, images.shape[0])
    if generator is None:
        generator = default_generator(images.device)
    table = LEVEL_PARAMETERS[dist]
    values = levels.tolist()
    if all(values) and dist in WHOLE_BATCH_TYPES and images.dtype == torch.float32:
        # Patch types paste into a copy of the batch: make it chunk by chunk and check each
        # copied chunk while it is in the cache (one read of the input instead of two).
        out = _checked_copy(images)
        return DISTORTION_FUNCTIONS[dist](out, [table[lv - 1] for lv in values], generator, out=out)
    if all(values) and dist not in WHOLE_BATCH_TYPES and _chunked(images):
        # The range is checked chunk by chunk, while the chunk is in the cache for its
        # distortion (a separate pass over a large batch costs 0.2 ms per image).
        return _in_chunks(dist, images, [table[lv - 1] for lv in values], generator, check=True)
    check_range(images)
    if all(values):  # the usual case: no gather, no scatter
        return _in_chunks(dist, images, [table[lv - 1] for lv in values], generator)
    out = memory.clone(images)
    active = [row for row, lv in enumerate(values) if lv]
    if active:
        index = torch.tensor(active, device=images.device)
        params = [table[values[row] - 1] for row in active]
        out[index] = _in_chunks(dist, images[index], params, generator)
    return out


def chunk_size(height: int, width: int, device: torch.device | str = "cpu") -> int:
    """Images per call to a distortion function.

    On the CPU about CHUNK_PIXELS pixels (one 512 x 512 image): a chunk's
    temporaries (about 3 MiB each) then stay in the cache between the several
    passes a type makes over them, which is what a per-image implementation
    gets for free, and far below glibc's 32 MiB mmap threshold, so freed
    buffers are reused instead of being faulted in again. Accelerators want
    the opposite, few large kernels: a chunk there is DEVICE_CHUNK_PIXELS (256
    images of 512 x 512), which only bounds the temporaries' memory. The size
    depends only on the image size and the device type, so random types draw
    the same numbers for the same batch on every machine of that type.
    """
    budget = CHUNK_PIXELS if torch.device(device).type == "cpu" else DEVICE_CHUNK_PIXELS
    return max(1, budget // (height * width))


CHUNK_PIXELS = 1 << 18
DEVICE_CHUNK_PIXELS = 1 << 26


# Types whose random draws cover the whole batch up front and that then paste
# small patches, in place when given ``out`` (a copy of the input, or the input):
# chunking them would only split the draws.
WHOLE_BATCH_TYPES: frozenset[str] = frozenset({"non_eccentricity_patch", "color_block"})


# Types whose function returns values in [0, 1] by construction (copies of the
# input, 8-bit codec output / 255, their own clamp): the
# engine's clamp would be one more pass over the batch for nothing.
IN_RANGE_TYPES: frozenset[str] = frozenset({
    "jpeg", "jpeg2000", "color_quantization", "white_noise", "white_noise_ycbcr", "impulse_noise",
    "multiplicative_noise", "darken", "non_eccentricity_patch", "pixelate", "color_block", "contrast_change"})


# Types whose function takes ``out=``: the chunk's result is written straight into
# the output batch, saving a copy of every image (about 0.2 ms per 384 x 512
# image on the CPU, a fifth of a pixelation).
WRITES_INTO_TYPES: frozenset[str] = frozenset({"pixelate", "quantization", "jpeg", "white_noise",
                                                "white_noise_ycbcr"})

# The speed hints above are optional per type, but a name they keep after its type is renamed would
# silently drop the hint.
assert WHOLE_BATCH_TYPES | IN_RANGE_TYPES | WRITES_INTO_TYPES <= set(DISTORTION_TYPES)


def _working_dtype(images: Tensor) -> torch.dtype:
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def _chunked(images: Tensor) -> bool:
    return images.shape[0] > chunk_size(images.shape[-2], images.shape[-1], images.device)


def _checked_copy(images: Tensor) -> Tensor:
    """A copy of ``images`` whose [0, 1] range was checked chunk by chunk, on the copy."""
    out = memory.empty_like(images)
    step = chunk_size(images.shape[-2], images.shape[-1], images.device)
    for start in range(0, images.shape[0], step):
        check_range(out[start:start + step].copy_(images[start:start + step]))
    return out


def _in_chunks(dist: str, images: Tensor, params: list, generator: torch.Generator,
               check: bool = False) -> Tensor:
    """The distorted batch in the caller's dtype, clamped to [0, 1]; functions see float32
    (float64 when the caller's images are float64).

    ``check``: verify each chunk's range just before distorting it. A bad chunk
    restores the generator to its state at the call and raises, so the caller
    sees exactly what an up-front check gives: the error, and no state changed.
    """
    function = DISTORTION_FUNCTIONS[dist]
    state = generator.get_state() if check else None

    def run(chunk: Tensor, chunk_params: list, dest: Tensor | None = None) -> Tensor:
        into = dest is not None and dest.dtype == torch.float32 and dist in WRITES_INTO_TYPES
        result = function(chunk.to(_working_dtype(chunk)), chunk_params, generator, **({"out": dest} if into else {}))
        result = result if dist in IN_RANGE_TYPES else result.clamp_(0, 1)
        return result if dest is None or result is dest else dest.copy_(result)

    step = chunk_size(images.shape[-2], images.shape[-1], images.device)
    if dist in WHOLE_BATCH_TYPES or images.shape[0] <= step:
        return run(images, params).to(images.dtype)
    out = memory.empty_like(images)
    for start in range(0, images.shape[0], step):
        stop = start + step
        if check:
            try:
                check_range(images[start:stop])
            except ValueError:
                generator.set_state(state)
                raise
        run(images[start:stop], params[start:stop], out[start:stop])
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
