"""BRISQUE features (Mittal, Moorthy & Bovik, IEEE TIP 2012), batched in torch.

Only the 36 natural-scene-statistics features are produced here; the protocol
reads them out with its own ridge regressor instead of the published SVR.

Conventions follow the reference MATLAB code and piq 0.8.0, whose output the
tests compare against: YIQ luma on [0, 255] rounded to integers (as rgb2gray
does for 8-bit input), 7x7 Gaussian window with sigma 7/6 and zero padding,
circular neighbour shifts, and the second scale by MATLAB's bicubic
imresize(im, 0.5). One departure: where a neighbour product has no negative (or
no positive) samples, as on nearly flat images, the empty side's spread is 0
(nss.fit_aggd) instead of the reference's NaN, so such images still get features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import nss

FEATURES_PER_SCALE = 18
NUM_SCALES = 2
NUM_FEATURES = FEATURES_PER_SCALE * NUM_SCALES
# Two scales and a 7x7 window at the coarse scale need at least 14 px; below
# that the statistics are dominated by padding and meaningless.
MIN_SIDE = 2 * nss.GAUSSIAN_WINDOW_SIZE

_PER_SCALE_NAMES = ["mscn_shape", "mscn_variance"] + [
    f"{direction}_{stat}"
    for direction in ("horizontal", "vertical", "main_diagonal", "secondary_diagonal")
    for stat in ("shape", "mean", "left_variance", "right_variance")
]
FEATURE_NAMES = [f"scale{scale + 1}_{name}" for scale in range(NUM_SCALES) for name in _PER_SCALE_NAMES]


def brisque_features(images: torch.Tensor, half_size: str = "matlab") -> torch.Tensor:
    """36 BRISQUE features for a batch ``N x 3 x H x W`` in [0, 1] -> float64 ``N x 36``.

    Order per scale (fine, then half resolution): MSCN GGD shape and variance;
    then shape, mean, left variance, right variance of the AGGD fits of the
    horizontal, vertical, main-diagonal and secondary-diagonal neighbour
    products (see ``FEATURE_NAMES``). Runs on the images' device.
    ``half_size``: how the second scale is made: ``matlab`` (imresize, antialiased,
    as the reference) or ``opencv`` (``cv2.resize`` INTER_CUBIC, not antialiased,
    as the ``brisque`` package whose SVR the ``brisque-published`` row uses).
    """
    if half_size not in ("matlab", "opencv"):
        raise ValueError(f"brisque_features: half_size must be 'matlab' or 'opencv', not {half_size!r}")
    nss.check_rgb_batch(images, min_height=MIN_SIDE, min_width=MIN_SIDE, what="brisque_features")
    grey = nss.luma(images)
    # A constant grey image has no statistics, only the zero-padding border's: its features are
    # undefined, and NaN says so (iqabench.features' contract: the protocol drops and counts such rows).
    constant = grey.flatten(1).amin(dim=1) == grey.flatten(1).amax(dim=1)
    per_scale = []
    for scale in range(NUM_SCALES):
        coefficients, _ = nss.mscn(grey, padding="zeros")
        per_scale.append(nss.brisque_block_features(coefficients[:, 0]))
        if scale + 1 < NUM_SCALES:
            # torch's bicubic (a = -0.75, pixel centres) without antialias is OpenCV's INTER_CUBIC.
            grey = (nss.half_resize(grey) if half_size == "matlab" else
                    F.interpolate(grey, scale_factor=0.5, mode="bicubic", align_corners=False, antialias=False))
    features = torch.cat(per_scale, dim=-1)
    features[constant] = float("nan")  # (nearly) flat images whose fits are undefined are NaN already
    return features
