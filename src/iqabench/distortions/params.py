"""KADID-10k distortion types, their groups and the level parameters.

Types and order follow Lin, Hosu & Saupe (2019), "KADID-10k: a large-scale
artificially distorted IQA database", and the MATLAB generator released with
KADIS-700k (``matlab_code_imdistort/imdist_generator.m``). The operations are
MATLAB's, with the departures each module lists; the generator's per-image
min-max stretch (``mapmm``) of its input and output is not applied (nor by
ARNIQA's port): outputs are clipped to [0, 1].

The level table is ARNIQA's (``utils/utils_data.py``, ``distortion_range``),
what ARNIQA pretrains with, for the 23 types it has. It is the MATLAB table
except for three types:

* ``jpeg2000`` level 5: compression ratio 170 (MATLAB: 400);
* ``mean_shift`` (0, +0.08, -0.08, +0.15, -0.15) and ``contrast_change``
  (0, +0.15, -0.4, +0.3, -0.6): MATLAB lists the values in signed order,
  (0.15, 0.08, 0, -0.08, -0.15) and (0.3, 0.15, 0, -0.4, -0.6), amount 0 at
  level 3; ARNIQA's order grows in magnitude, amount 0 at level 1.
  CONTRIQUE's class labels therefore name those levels as ARNIQA orders them.

The two types ARNIQA leaves out take MATLAB's values: ``color_quantization``
64/48/32/16/8 colours and ``denoise`` noise variances 0.01..0.15.

Level 1 of ``mean_shift`` (amount 0) and of ``color_saturation_lab`` (factor 1)
leaves the image unchanged, and the signed levels are not ordered by pixel error; tests check those types against their
signed effect instead of against a monotone pixel error.

Groups are ARNIQA's seven (Agnolucci et al., WACV 2024); ARNIQA has no
``color_quantization`` or ``denoise``, so they join the colour and noise groups
where KADID's own taxonomy places them.
"""
from __future__ import annotations

DISTORTION_TYPES: tuple[str, ...] = (
    "gaussian_blur", "lens_blur", "motion_blur",
    "color_diffusion", "color_shift", "color_quantization",
    "color_saturation_hsv", "color_saturation_lab",
    "jpeg2000", "jpeg",
    "white_noise", "white_noise_ycbcr", "impulse_noise", "multiplicative_noise", "denoise",
    "brighten", "darken", "mean_shift",
    "jitter", "non_eccentricity_patch", "pixelate", "quantization", "color_block",
    "high_sharpen", "contrast_change",
)

DISTORTION_GROUPS: dict[str, tuple[str, ...]] = {
    "blur": ("gaussian_blur", "lens_blur", "motion_blur"),
    "color distortion": ("color_diffusion", "color_shift", "color_quantization",
                         "color_saturation_hsv", "color_saturation_lab"),
    "jpeg": ("jpeg2000", "jpeg"),
    "noise": ("white_noise", "white_noise_ycbcr", "impulse_noise", "multiplicative_noise", "denoise"),
    "brightness change": ("brighten", "darken", "mean_shift"),
    "spatial distortion": ("jitter", "non_eccentricity_patch", "pixelate", "quantization", "color_block"),
    "sharpness & contrast": ("high_sharpen", "contrast_change"),
}

GROUP_OF: dict[str, str] = {name: group for group, names in DISTORTION_GROUPS.items() for name in names}

# Parameter of each level 1..5, in the unit the distortion function takes.
LEVEL_PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (0.1, 0.5, 1.0, 2.0, 5.0),            # sigma (px)
    "lens_blur": (1, 2, 4, 6, 8),                           # disk radius (px)
    "motion_blur": (1, 2, 4, 6, 10),                        # line length (px)
    "color_diffusion": (1, 3, 6, 8, 12),                    # amount
    "color_shift": (1, 3, 6, 8, 12),                        # shift length (px)
    "color_quantization": (64, 48, 32, 16, 8),              # palette size
    "color_saturation_hsv": (0.4, 0.2, 0.1, 0.0, -0.4),     # S multiplier
    "color_saturation_lab": (1, 2, 3, 6, 9),                # a*b* multiplier
    "jpeg2000": (16, 32, 45, 120, 170),                     # compression ratio
    "jpeg": (43, 36, 24, 7, 4),                             # quality
    "white_noise": (0.001, 0.002, 0.003, 0.005, 0.01),      # variance
    "white_noise_ycbcr": (0.0001, 0.0005, 0.001, 0.002, 0.003),
    "impulse_noise": (0.001, 0.005, 0.01, 0.02, 0.03),      # density
    "multiplicative_noise": (0.001, 0.005, 0.01, 0.02, 0.05),
    "denoise": (0.01, 0.03, 0.05, 0.1, 0.15),               # noise variance before denoising
    "brighten": (0.1, 0.2, 0.4, 0.7, 1.1),
    "darken": (0.05, 0.1, 0.2, 0.4, 0.8),
    "mean_shift": (0.0, 0.08, -0.08, 0.15, -0.15),
    "jitter": (0.05, 0.1, 0.2, 0.5, 1.0),                   # displacement std (px)
    "non_eccentricity_patch": (20, 40, 60, 80, 100),        # number of patches
    "pixelate": (0.01, 0.05, 0.1, 0.2, 0.5),
    "quantization": (20, 16, 13, 10, 7),                    # number of grey levels
    "color_block": (2, 4, 6, 8, 10),                        # number of blocks
    "high_sharpen": (1, 2, 3, 6, 12),                       # unsharp amount
    "contrast_change": (0.0, 0.15, -0.4, 0.3, -0.6),
}

NUM_LEVELS = 5
NUM_CLASSES = len(DISTORTION_TYPES) * NUM_LEVELS + 1  # + pristine


def class_index(dist: str, level: int) -> int:
    """CONTRIQUE-style class: ``type_index * 5 + (level - 1) + 1``; 0 is pristine."""
    if level == 0:
        return 0
    if dist not in DISTORTION_TYPES:
        raise ValueError(f"unknown distortion {dist!r}; valid names: {', '.join(DISTORTION_TYPES)}")
    if not 1 <= int(level) <= NUM_LEVELS:
        raise ValueError(f"level {level!r} for {dist!r} is out of range; use 0 (pristine) or 1..{NUM_LEVELS}")
    return DISTORTION_TYPES.index(dist) * NUM_LEVELS + int(level)


def class_name(index: int) -> tuple[str, int]:
    """Inverse of :func:`class_index`: ``(type, level)``, ``("pristine", 0)`` for 0."""
    if not 0 <= int(index) < NUM_CLASSES:
        raise ValueError(f"class index {index!r} is out of range 0..{NUM_CLASSES - 1}")
    if index == 0:
        return ("pristine", 0)
    type_index, level_offset = divmod(int(index) - 1, NUM_LEVELS)
    return (DISTORTION_TYPES[type_index], level_offset + 1)
