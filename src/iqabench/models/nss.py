"""Natural-scene-statistics building blocks shared by BRISQUE and NIQE.

Everything works on whole batches: the luma, the MSCN (mean-subtracted
contrast-normalised) coefficients, and the moment-matching fits of the
generalised Gaussian (GGD) and asymmetric generalised Gaussian (AGGD) whose
shape parameter the reference MATLAB code finds by scanning a grid of shapes
0.2:0.001:10. Here the scan is a ``searchsorted`` on the (monotone) moment
ratio table, so every image -- or every patch -- is fitted at once without a
Python loop, and the answer is the same grid point the linear scan picks.

All statistics are computed in float64: the grid is 0.001 apart and the moment
ratios of neighbouring shapes differ by ~1e-4 relative, which float32 sums over
~10^5 pixels cannot resolve reliably.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F

# Y of YIQ, as piq (the reference features) uses. MATLAB's rgb2gray uses the
# inverted-YIQ row 0.2989/0.5870/0.1140, which flips the rounded grey level of
# ~1% of pixels and moves features by ~1e-5 relative: immaterial for quality,
# but it would break bit-level agreement with the reference.
RGB2GRAY_WEIGHTS = (0.299, 0.587, 0.114)
GAUSSIAN_WINDOW_SIZE = 7
GAUSSIAN_WINDOW_SIGMA = 7.0 / 6.0
SHAPE_GRID_START = 0.2
SHAPE_GRID_STEP = 0.001
SHAPE_GRID_SIZE = 9801  # 0.2:0.001:10 inclusive, as in the reference code
STAT_DTYPE = torch.float64

PaddingMode = Literal["zeros", "replicate"]


def check_rgb_batch(images: torch.Tensor, *, min_height: int, min_width: int,
                    what: str) -> None:
    """Raise a ValueError that says what is wrong with an image batch and how to fix it."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor of shape N x 3 x H x W, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{what}: expected a 4-D batch N x 3 x H x W, got shape {tuple(images.shape)}; "
                         "add a batch dimension with images.unsqueeze(0) for a single image")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected 3 (RGB) or 1 (grey) channels in dim 1, got {images.shape[1]} "
                         f"(shape {tuple(images.shape)}); convert to RGB and use N x C x H x W order")
    if images.shape[0] == 0:
        raise ValueError(f"{what}: the batch is empty")
    height, width = images.shape[-2:]
    if height < min_height or width < min_width:
        raise ValueError(f"{what}: images are {height}x{width} (HxW) but need at least "
                         f"{min_height}x{min_width}; upscale or skip images this small")
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise ValueError(f"{what}: images contain NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{what}: pixel values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
                             "divide 8-bit images by 255")
    else:
        raise ValueError(f"{what}: expected a floating-point tensor in [0, 1], got dtype {images.dtype}; "
                         "use images.float() / 255 for 8-bit data")


def luma(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] -> N x 1 x H x W integer grey levels on [0, 255], float64.

    The input is first quantised to 8-bit levels and the grey level rounded,
    as MATLAB's rgb2gray does for uint8 images: the reference features and
    every model trained on them saw integer grey levels, and quantising first
    makes float32 and float64 copies of one photo give identical features.
    """
    levels = torch.round(images.to(STAT_DTYPE) * 255.0)
    if images.shape[1] == 1:
        return levels
    # Explicit element-wise sum in a fixed order: ~0.1% of 8-bit colours land
    # exactly on a .5 grey level, and which way they round must not depend on a
    # BLAS/einsum summation order that differs between machines.
    red, green, blue = levels[:, 0:1], levels[:, 1:2], levels[:, 2:3]
    w_red, w_green, w_blue = RGB2GRAY_WEIGHTS
    return torch.round(red * w_red + green * w_green + blue * w_blue)


@functools.lru_cache(maxsize=1)
def _gaussian_taps() -> tuple[float, ...]:
    """1-D profile of fspecial('gaussian', 7, 7/6), normalised to sum 1.

    The 2-D window is the outer product of this profile with itself (the
    normalisation factors too), so filtering rows then columns is the same
    filter up to float64 round-off.
    """
    offsets = torch.arange(GAUSSIAN_WINDOW_SIZE, dtype=STAT_DTYPE) - (GAUSSIAN_WINDOW_SIZE - 1) / 2
    profile = torch.exp(-offsets ** 2 / (2 * GAUSSIAN_WINDOW_SIGMA ** 2))
    return tuple((profile / profile.sum()).tolist())


def gaussian_blur(maps: torch.Tensor, padding: PaddingMode) -> torch.Tensor:
    """7x7 Gaussian filter of ``[N, C, H, W]`` maps, same size, as two passes of 7 shifted adds.

    torch's float64 conv2d on the CPU has no fast kernel (it was ~80% of the
    BRISQUE time), and float32 cannot be used: the local variance
    E[I^2] - E[I]^2 cancels ~65000-sized terms. Shifted adds of a padded copy
    are plain vectorised float64 arithmetic, 14 multiply-adds per pixel
    instead of 49, on any device.
    """
    half = GAUSSIAN_WINDOW_SIZE // 2
    if padding == "replicate":
        padded = F.pad(maps, (half, half, half, half), mode="replicate")
    elif padding == "zeros":
        padded = F.pad(maps, (half, half, half, half))
    else:
        raise ValueError(f"padding must be 'zeros' or 'replicate', got {padding!r}")
    height, width = maps.shape[-2:]
    taps = _gaussian_taps()
    rows = padded[..., 0:height, :] * taps[0]
    for offset, tap in enumerate(taps[1:], start=1):
        rows.add_(padded[..., offset:offset + height, :], alpha=tap)
    out = rows[..., 0:width] * taps[0]
    for offset, tap in enumerate(taps[1:], start=1):
        out.add_(rows[..., offset:offset + width], alpha=tap)
    return out


def local_mean_std(grey: torch.Tensor, padding: PaddingMode) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian-weighted local mean and standard deviation of N x 1 x H x W grey images.

    ``padding="zeros"`` is MATLAB's filter2(..., 'same') as used by BRISQUE;
    ``"replicate"`` is imfilter(..., 'replicate') as used by NIQE.
    """
    # One pass over [I, I^2] stacked on the channel axis instead of two calls.
    blurred = gaussian_blur(torch.cat([grey, grey * grey], dim=1), padding)
    mean, mean_of_square = blurred[:, 0:1], blurred[:, 1:2]
    # abs() as in the reference: rounding can make the variance slightly negative.
    std = (mean_of_square - mean * mean).abs().sqrt()
    return mean, std


# Below this, |I - mu| on the 0..255 scale is convolution round-off in a flat
# window (e.g. a saturated sky), not signal.
FLAT_TOLERANCE = 1e-8


def mscn(grey: torch.Tensor, padding: PaddingMode) -> tuple[torch.Tensor, torch.Tensor]:
    """MSCN coefficients (I - mu) / (sigma + 1) and the local std (NIQE's sharpness map).

    Coefficients of flat windows are set to exactly 0. Otherwise round-off of
    +-1e-14 would count them as left or right samples in the AGGD fits and move
    the left/right variances by up to a few percent on images with saturated
    areas -- differently on CPU and GPU, whose convolutions round differently.
    """
    mean, std = local_mean_std(grey, padding)
    centred = grey - mean
    centred = torch.where(centred.abs() < FLAT_TOLERANCE, torch.zeros_like(centred), centred)
    return centred / (std + 1.0), std


@functools.lru_cache(maxsize=32)
def _imresize_matrix(in_len: int, out_len: int, device: str) -> torch.Tensor:
    """``out_len x in_len`` matrix of MATLAB's imresize (bicubic, antialiased) along one axis.

    MATLAB stretches the a=-0.5 cubic kernel by 1/scale when shrinking and
    mirrors indices at the borders (symmetric padding); torch's antialiased
    bicubic instead truncates and renormalises there, which changes the
    second-scale features of the reference by up to ~1e-3.
    """
    scale = out_len / in_len
    kernel_width = 4.0 / scale
    centres = torch.arange(1, out_len + 1, dtype=STAT_DTYPE) / scale + 0.5 * (1 - 1 / scale)
    first = torch.floor(centres - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    source = first[:, None] + torch.arange(taps, dtype=STAT_DTYPE)[None, :]
    distance = (scale * (centres[:, None] - source)).abs()
    cubic = torch.where(distance <= 1, 1.5 * distance ** 3 - 2.5 * distance ** 2 + 1,
                        torch.where(distance <= 2, -0.5 * distance ** 3 + 2.5 * distance ** 2 - 4 * distance + 2,
                                    torch.zeros_like(distance)))
    weights = cubic / cubic.sum(dim=1, keepdim=True)
    mirrored = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    columns = mirrored[torch.remainder(source.long() - 1, 2 * in_len)]
    matrix = torch.zeros(out_len, in_len, dtype=STAT_DTYPE)
    matrix.index_put_((torch.arange(out_len).repeat_interleave(taps), columns.reshape(-1)),
                      weights.reshape(-1), accumulate=True)
    return matrix.to(device)


def half_resize(grey: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(im, 0.5)`` of ``[..., H, W]`` to ``floor(H/2) x floor(W/2)``, as two matmuls."""
    height, width = grey.shape[-2:]
    device = str(grey.device)
    rows = _imresize_matrix(height, height // 2, device)
    cols = _imresize_matrix(width, width // 2, device)
    return rows @ grey @ cols.T


@functools.lru_cache(maxsize=8)
def _shape_tables(device: str) -> dict[str, torch.Tensor]:
    """Moment-ratio tables over the shape grid, each sorted ascending for searchsorted."""
    shapes = torch.round((SHAPE_GRID_START + SHAPE_GRID_STEP * torch.arange(SHAPE_GRID_SIZE, dtype=STAT_DTYPE))
                         * 1000) / 1000
    lg1, lg2, lg3 = (torch.lgamma(k / shapes) for k in (1.0, 2.0, 3.0))
    # GGD: E[x^2] / E[|x|]^2 = G(1/a) G(3/a) / G(2/a)^2, strictly decreasing in a.
    ggd_ratio = torch.exp(lg1 + lg3 - 2 * lg2)
    # AGGD (as in the reference): E[|x|]^2 / E[x^2] -- the reciprocal, increasing in a.
    aggd_ratio = torch.exp(2 * lg2 - lg1 - lg3)
    if not (torch.diff(ggd_ratio) < 0).all() or not (torch.diff(aggd_ratio) > 0).all():
        raise RuntimeError("shape moment-ratio tables are not monotone; the grid lookup would be wrong")
    tables = {
        "shapes": shapes,
        "ggd_ratio": ggd_ratio.flip(0), "ggd_index": torch.arange(SHAPE_GRID_SIZE - 1, -1, -1),
        "aggd_ratio": aggd_ratio, "aggd_index": torch.arange(SHAPE_GRID_SIZE),
    }
    return {key: value.to(device) for key, value in tables.items()}


def _nearest_shape(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    """Grid shape whose moment ratio is nearest to ``ratio`` (any shape, vectorised).

    Same answer as argmin |table - ratio| over the grid, including the tie rule
    (the smaller shape wins), but O(log grid) per value instead of O(grid).
    """
    tables = _shape_tables(str(ratio.device))
    sorted_ratio, grid_index = tables[f"{kind}_ratio"], tables[f"{kind}_index"]
    flat = ratio.reshape(-1).contiguous()
    upper = torch.searchsorted(sorted_ratio, flat).clamp_(1, SHAPE_GRID_SIZE - 1)
    lower = upper - 1
    dist_lower = (flat - sorted_ratio[lower]).abs()
    dist_upper = (flat - sorted_ratio[upper]).abs()
    idx_lower, idx_upper = grid_index[lower], grid_index[upper]
    pick_upper = (dist_upper < dist_lower) | ((dist_upper == dist_lower) & (idx_upper < idx_lower))
    chosen = torch.where(pick_upper, idx_upper, idx_lower)
    shape = tables["shapes"][chosen]
    # NaN ratios (flat regions) stay NaN instead of silently landing on a grid end.
    return torch.where(torch.isnan(flat), torch.full_like(shape, float("nan")), shape).view(ratio.shape)


def fit_ggd(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-mean GGD fit over the last two dims: (shape, variance)."""
    flat = values.flatten(-2)
    variance = (flat * flat).mean(dim=-1)
    mean_abs = flat.abs().mean(dim=-1)
    return _nearest_shape(variance / mean_abs.pow(2), "ggd"), variance


def fit_aggd(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD fit over the last two dims: (shape, left std, right std), the reference's moment matching.

    Every moment is derived from five reductions over one contiguous copy
    (sums of x, x^2, min(x, 0), min(x, 0)^2 and the sign counts) rather than
    masked passes per side; on CPU these reductions are the whole cost.
    """
    flat = values.flatten(-2).contiguous()
    negative = flat.clamp(max=0.0)
    total_square = (flat * flat).sum(dim=-1)
    left_square = (negative * negative).sum(dim=-1)
    total_abs = flat.sum(dim=-1) - 2 * negative.sum(dim=-1)
    left_count = (flat < 0).sum(dim=-1)
    right_count = (flat > 0).sum(dim=-1)
    # A one-signed block (e.g. a nearly flat image, whose only non-zero MSCN values
    # are the zero-padding border) gets spread 0 on its empty side, the limit of the
    # AGGD as that scale shrinks; the reference's mean([]) gives NaN there, which
    # would leave such an image with no features at all. All-zero blocks stay NaN.
    left_std = (left_square / left_count.clamp(min=1)).sqrt()
    right_std = ((total_square - left_square) / right_count.clamp(min=1)).sqrt()
    ratio_lr = left_std / right_std
    count = flat.shape[-1]
    moment_ratio = (total_abs / count).pow(2) / (total_square / count)
    normalised = moment_ratio * (ratio_lr.pow(3) + 1) * (ratio_lr + 1) / (ratio_lr.pow(2) + 1).pow(2)
    # The factor tends to 1 as ratio_lr -> inf (no right side), as it does at ratio_lr = 0.
    normalised = torch.where(torch.isinf(ratio_lr), moment_ratio, normalised)
    return _nearest_shape(normalised, "aggd"), left_std, right_std


BRISQUE_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def brisque_block_features(coefficients: torch.Tensor) -> torch.Tensor:
    """18 BRISQUE features of MSCN maps ``[..., H, W]`` -> ``[..., 18]``.

    GGD shape and variance of the coefficients, then for the horizontal,
    vertical, main- and secondary-diagonal neighbour products: AGGD shape, mean,
    left variance, right variance. Neighbours wrap around (MATLAB circshift).
    """
    shape, variance = fit_ggd(coefficients)
    features = [shape, variance]
    for shift in BRISQUE_SHIFTS:
        product = coefficients * torch.roll(coefficients, shifts=shift, dims=(-2, -1))
        shape, left_std, right_std = fit_aggd(product)
        # E[x] of the AGGD: (sr - sl) G(2/a) / sqrt(G(1/a) G(3/a)).
        mean = (right_std - left_std) * torch.exp(
            torch.lgamma(2 / shape) - 0.5 * (torch.lgamma(1 / shape) + torch.lgamma(3 / shape)))
        features.extend((shape, mean, left_std.pow(2), right_std.pow(2)))
    return torch.stack(features, dim=-1)


def niqe_block_features(coefficients: torch.Tensor) -> torch.Tensor:
    """18 NIQE features of MSCN blocks ``[..., h, w]`` -> ``[..., 18]`` (computefeature.m).

    Unlike BRISQUE, NIQE fits an AGGD to the coefficients themselves (shape and
    mean scale (bl + br) / 2) and reports the AGGD *scales* beta_l, beta_r of
    the products rather than the variances.
    """
    def aggd_scales(values):
        shape, left_std, right_std = fit_aggd(values)
        to_scale = torch.exp(0.5 * (torch.lgamma(1 / shape) - torch.lgamma(3 / shape)))
        return shape, left_std * to_scale, right_std * to_scale

    shape, beta_left, beta_right = aggd_scales(coefficients)
    features = [shape, (beta_left + beta_right) / 2]
    for shift in NIQE_SHIFTS:
        product = coefficients * torch.roll(coefficients, shifts=shift, dims=(-2, -1))
        shape, beta_left, beta_right = aggd_scales(product)
        mean = (beta_right - beta_left) * torch.exp(torch.lgamma(2 / shape) - torch.lgamma(1 / shape))
        features.extend((shape, mean, beta_left, beta_right))
    return torch.stack(features, dim=-1)
