"""CONTRIQUE's two views of an image and its colour-space augmentation.

Each image gives a random crop at full resolution and one of its half-size copy;
which of the two goes into the first forward pass is drawn per image, as
CONTRIQUE's ``div_factor`` does, so each pass (and its batch-norm statistics)
mixes both scales. Each view is then, independently, shown in a colour space
drawn uniformly from ``colour_spaces`` and flipped with p = 0.5.

The colour spaces follow CONTRIQUE's ``dataset_loader.py``, all mapped to
three channels in [0, 1] as its PIL pipeline does:

- ``rgb``: unchanged;
- ``gray``: ITU-R 601 luma replicated to three channels (``RandomGrayscale``);
- ``lab``: CIELAB as PIL's ``ImageCms`` sRGB -> LAB gives it (D50 white,
  Bradford-adapted sRGB primaries), 8-bit encoded as PIL stores it: L / 100,
  and a, b as two's-complement bytes / 255 (so they wrap from 1 to 0 at a = 0:
  a quirk of CONTRIQUE's pipeline, kept so that the recipe is the same);
- ``hsv``: PIL's HSV (hue, saturation, value each in [0, 1]);
- ``mean_subtracted``: the mean-subtracted transform: each channel minus its Gaussian
  local mean (7 taps, sigma 7/6, borders reflected about the edge as scipy's
  ``mode='reflect'``), then min-max scaled per image and channel with
  CONTRIQUE's 1e-3 (of 255) guard and truncated to 8 bits, as its
  ``MS_transform`` stores the result as a uint8 image.

Views are made on whatever device the batch is on; random draws come from a
CPU generator so a run is reproducible across devices.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

COLOUR_SPACES = ("rgb", "gray", "lab", "hsv", "mean_subtracted")


def check_colour_spaces(spaces: Sequence[str]) -> tuple[str, ...]:
    unknown = [s for s in spaces if s not in COLOUR_SPACES]
    if unknown or not spaces:
        raise ValueError(f"pretrain.colour_spaces must be a non-empty list from {list(COLOUR_SPACES)}, "
                         f"got {list(spaces)}")
    return tuple(spaces)


def make_views(batch: torch.Tensor, crop: int, gen: torch.Generator,
               colour_spaces: Sequence[str] = ("rgb",)) -> tuple[torch.Tensor, torch.Tensor]:
    """A full-resolution crop and a half-resolution crop of each image, each recoloured and randomly flipped;
    per image, at random, the first returned view is the full or the half one (the other is the second)."""
    spaces = check_colour_spaces(colour_spaces)
    half = F.interpolate(batch, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    full_view = _random_crop_flip(batch, crop, gen)
    full_view = recolour(full_view, spaces, gen)
    half_view = _random_crop_flip(half, min(crop, *half.shape[2:]), gen)
    half_view = recolour(half_view, spaces, gen)
    if half_view.shape != full_view.shape:  # a region under 2 x crop: the scales cannot share a forward pass
        return full_view, half_view
    swap = (torch.rand(batch.shape[0], generator=gen) < 0.5).to(batch.device)[:, None, None, None]
    return torch.where(swap, half_view, full_view), torch.where(swap, full_view, half_view)


def _random_crop_flip(batch: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = batch.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} px is larger than the training images ({h}x{w}); lower pretrain.crop")
    tops = torch.randint(h - size + 1, (n,), generator=gen).tolist()
    lefts = torch.randint(w - size + 1, (n,), generator=gen).tolist()
    out = torch.stack([img[:, t:t + size, l:l + size] for img, t, l in zip(batch, tops, lefts)])
    flip = (torch.rand(n, generator=gen) < 0.5).to(batch.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def recolour(batch: torch.Tensor, spaces: Sequence[str], gen: torch.Generator) -> torch.Tensor:
    """Each image in a colour space drawn uniformly from ``spaces`` (no draw when there is one)."""
    if len(spaces) == 1:
        return COLOUR_FNS[spaces[0]](batch)
    choice = torch.randint(len(spaces), (batch.shape[0],), generator=gen)
    out = batch.clone()
    for k, space in enumerate(spaces):
        rows = (choice == k).nonzero().flatten().to(batch.device)
        if len(rows) and space != "rgb":
            out[rows] = COLOUR_FNS[space](batch[rows])
    return out


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF  # its import costs seconds; params checks read this module

    return TF.rgb_to_grayscale(rgb, num_output_channels=3)


def to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    cmax, argmax = rgb.max(dim=1)
    delta = cmax - rgb.min(dim=1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = rgb.unbind(1)
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], 1)
    hue = hue.gather(1, argmax[:, None]).squeeze(1) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(cmax > 0, delta / torch.where(cmax > 0, cmax, torch.ones_like(cmax)), torch.zeros_like(cmax))
    return torch.stack([hue, sat, cmax], 1)


# sRGB -> XYZ adapted to D50 (Bradford), the ICC connection space littlecms converts through.
_SRGB_TO_XYZ_D50 = torch.tensor([[0.4360747, 0.3850649, 0.1430804],
                                 [0.2225045, 0.7168786, 0.0606169],
                                 [0.0139322, 0.0971045, 0.7141733]])
_D50 = torch.tensor([0.96422, 1.0, 0.82521])


def to_lab(rgb: torch.Tensor) -> torch.Tensor:
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _SRGB_TO_XYZ_D50.to(rgb), linear) / _D50.to(rgb)[None, :, None, None]
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    lab = torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)
    # PIL stores a and b as two's-complement bytes, so CONTRIQUE's network sees them wrap at 0.
    return torch.stack([(lab[:, 0] / 100).clamp(0, 1), lab[:, 1].remainder(256) / 255,
                        lab[:, 2].remainder(256) / 255], 1)


def _gauss_window(taps_each_side: int = 3, sigma: float = 7 / 6) -> torch.Tensor:
    x = torch.arange(-taps_each_side, taps_each_side + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * x ** 2 / sigma ** 2)
    return (w / w.sum()).float()


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad ``dim`` by ``pad`` on each side, reflected about the edge (``d c b a | a b c d``): scipy.ndimage's
    'reflect', which F.pad lacks (its 'reflect' is scipy's 'mirror', ``d c b | a b c d``)."""
    size = x.shape[dim]
    return torch.cat([x.narrow(dim, 0, pad).flip(dim), x, x.narrow(dim, size - pad, pad).flip(dim)], dim)


def to_mean_subtracted(rgb: torch.Tensor) -> torch.Tensor:
    """CONTRIQUE's ``MS_transform``: ``correlate1d`` along rows then columns (mode 'reflect'), min-max per
    channel with ``np.ptp + 1e-3`` on the 0-255 scale, stored as uint8 (``astype`` truncates)."""
    window = _gauss_window().to(rgb)
    c, pad = rgb.shape[1], len(window) // 2
    mu = F.conv2d(_pad_symmetric(rgb, pad, 3), window.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    mu = F.conv2d(_pad_symmetric(mu, pad, 2), window.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    diff = rgb - mu
    lo = diff.amin(dim=(2, 3), keepdim=True)
    span = diff.amax(dim=(2, 3), keepdim=True) - lo
    return ((diff - lo) / (span + 1e-3 / 255)).mul_(255).floor_().div_(255)


COLOUR_FNS = {"rgb": lambda x: x, "gray": to_gray, "lab": to_lab, "hsv": to_hsv, "mean_subtracted": to_mean_subtracted}
