"""DeepWSD (Liao et al., ACM MM 2022): Wasserstein distance between deep features, stage by stage.

Follows the authors' code (github.com/Buka-Xing/DeepWSD, ``DeepWSD.py`` and
``utils.py``, the version whose ``downsample`` returns the factor ``f``):

* both images are average-pooled by ``f = max(1, round(max(H, W) / 256))``;
  the window is 16 when ``f >= 5``, else 4;
* the stages are the input image itself (stage 0) and the backbone's feature
  maps; for VGG16 those are relu1_2 ... relu5_3 with every max-pool replaced by
  a Hanning-window L2 pooling, fed images in [0, 1] without ImageNet mean/std
  normalisation (both as the authors' network);
* each stage map is zero-padded (or cropped) to a multiple of the window:
  ``round(size / window) * window`` rows at the bottom and columns at the left;
* its C x H x W values are cut into ``window**2`` equal consecutive runs of the
  flattened buffer (the authors' ``reshape([win, win, C, -1])``); element ``j``
  of every run forms column ``j``: a "histogram" of ``window**2`` bins whose
  masses are ``x**2 / sum(x)`` (``x`` times its share of the stage total). Note
  this groups values that lie ``C*H*W / window**2`` apart in memory, not spatial
  window x window patches as the paper's text suggests; we keep the code's
  grouping so that the numbers are the published metric's;
* per column: ``W_p^p`` (p = 2, no root) between the two histograms on bin
  positions 0 .. window**2 - 1, with POT's ``wasserstein_1d`` semantics
  (cumulative masses not renormalised), plus the squared L2 difference of the
  raw values weighted by ``1 / (sqrt(exp(-1 / (wsd + 10))) * (wsd + 10)**2)``;
  summed over the columns;
* the stage sums are averaged over the stages and the score is
  ``log(score + 1)`` when ``f == 1``, ``log(score + 1)**2`` otherwise.

The distance is 0 for identical images and symmetric in its two arguments. It
is computed per image (the authors' code takes one pair; a batch gives each
pair its own stage totals). Backbones: the project's encoder
(:meth:`iqabench.models.encoders.Encoder.stages`, as trained: its strided convs
are not replaced) or torchvision's VGG16 ``features`` from a local state dict.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import encoders

TARGET_SIZE = 256  # the authors' downsample target
P = 2
# VGG16 `features` indices: (first, last + 1) of each stage's conv-ReLU layers; the
# max-pool just before stages 2-5 (indices 4, 9, 16, 23) becomes an L2 pooling.
VGG16_STAGES = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
VGG16_POOLED_CHANNELS = (None, 64, 128, 256, 512)


class L2Pooling(nn.Module):
    """sqrt of a 3x3 Hanning-weighted mean of squares, stride 2 (the authors' replacement for max-pool)."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x ** 2, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class VGG16Stages(nn.Module):
    """VGG16 relu1_2 ... relu5_3 with L2 pooling, from torchvision's ``features``."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.blocks = nn.ModuleList()
        for (first, stop), pooled in zip(VGG16_STAGES, VGG16_POOLED_CHANNELS):
            layers = [L2Pooling(pooled)] if pooled else []
            self.blocks.append(nn.Sequential(*layers, *features[first:stop]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


class EncoderStages(nn.Module):
    """An iqabench encoder's :meth:`~iqabench.models.encoders.Encoder.stages` as a module."""

    def __init__(self, encoder: encoders.Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.stages(x)


def downsample(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(x, y) average-pooled to about 256 px on the long side, the window, and the factor f."""
    factor = int(max(1, round(max(x.shape[2], x.shape[3]) / TARGET_SIZE)))
    if factor > 1:
        x, y = F.avg_pool2d(x, factor), F.avg_pool2d(y, factor)
    return x, y, 16 if factor >= 5 else 4, factor


def fit_to_window(feature: torch.Tensor, window: int) -> torch.Tensor:
    """Zero-pad (or crop, where rounding goes down) the bottom rows and left columns to a multiple of window."""
    rows = round(feature.shape[2] / window) * window - feature.shape[2]
    cols = round(feature.shape[3] / window) * window - feature.shape[3]
    return F.pad(feature, (cols, 0, 0, rows))


def histogram_wasserstein(u_mass: torch.Tensor, v_mass: torch.Tensor, p: int = P) -> torch.Tensor:
    """``W_p^p`` between histograms on bins 0 .. n-1, one per row of the R x n masses.

    As POT's ``wasserstein_1d(bins, bins, u_mass, v_mass, p)``: the masses are
    not renormalised (a row with less total mass has its quantile function held
    at its last bin) and no p-th root is taken.
    """
    n = u_mass.shape[1]
    u_cum, v_cum = u_mass.cumsum(1), v_mass.cumsum(1)
    levels = torch.cat([u_cum, v_cum], 1).sort(1).values
    # The quantile function of bins 0..n-1 is the bin index itself.
    u_quantile = torch.searchsorted(u_cum.contiguous(), levels).clamp(max=n - 1)
    v_quantile = torch.searchsorted(v_cum.contiguous(), levels).clamp(max=n - 1)
    steps = torch.diff(levels, dim=1, prepend=torch.zeros_like(levels[:, :1]))
    return (steps * (u_quantile - v_quantile).abs().to(steps.dtype) ** p).sum(1)


def stage_distance(x: torch.Tensor, y: torch.Tensor, window: int, p: int = P) -> torch.Tensor:
    """The DeepWSD sum of one stage for each pair: 1 x C x H x W (or B x ...) maps -> B values."""
    out = []
    for a, b in zip(x, y):  # one image at a time keeps the R x 2n quantile arrays of a batch out of memory
        a, b = fit_to_window(a[None], window), fit_to_window(b[None], window)
        a_cols, b_cols = a.reshape(window * window, -1).T, b.reshape(window * window, -1).T
        a_mass = a_cols * a_cols / (a.sum() + 1e-6)
        b_mass = b_cols * b_cols / (b.sum() + 1e-6)
        wsd = histogram_wasserstein(a_mass, b_mass, p)
        l2 = ((a_cols - b_cols) ** 2).sum(1)
        weight = 1.0 / (torch.exp(-1.0 / (wsd + 10)).sqrt() * (wsd + 10) ** 2)
        out.append((wsd + l2 * weight).sum())
    return torch.stack(out)


class DeepWSD(nn.Module):
    """``DeepWSD(backbone)(dist, ref)``: B-vector of DeepWSD scores (0 = identical, larger = worse).

    ``backbone`` maps a B x 3 x H x W batch in [0, 1] to its list of non-negative
    feature maps; the input image is prepended as stage 0.
    """

    def __init__(self, backbone: nn.Module, name: str = "deepwsd"):
        super().__init__()
        self.backbone = backbone
        self.name = name

    @torch.no_grad()
    def forward(self, dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if dist.shape != ref.shape:
            raise ValueError(f"{self.name}: distorted {tuple(dist.shape)} and reference {tuple(ref.shape)} differ")
        dist, ref, window, factor = downsample(dist, ref)
        # One backbone pass for both halves; the backbones are in eval mode, so pairs do not interact.
        maps = [torch.cat([dist, ref])] + list(self.backbone(torch.cat([dist, ref])))
        n = len(dist)
        score = sum(stage_distance(m[:n], m[n:], window) for m in maps) / len(maps)
        score = torch.log(score + 1)
        return score if factor == 1 else score ** 2


def from_encoder(path: str | Path) -> DeepWSD:
    """DeepWSD on the stages of an iqabench encoder file (row fr:deepwsd: the one `pretrain@contrique` trains)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepWSD encoder {path} does not exist; train it first with `dvc repro pretrain` "
                                "(or give VGG16 weights with fr:deepwsd-vgg16:PATH)")
    return DeepWSD(EncoderStages(encoders.load(path).eval()), name=f"deepwsd on {path}")


def from_vgg16(path: str | Path) -> DeepWSD:
    """DeepWSD on torchvision VGG16 ``features`` read from a local state dict (the published configuration)."""
    return DeepWSD(VGG16Stages(load_vgg16_features(path)).eval(), name=f"deepwsd on VGG16 {path}")


def load_vgg16_features(path: str | Path) -> nn.Sequential:
    """torchvision's VGG16 ``features`` with the weights of a full VGG16 or a features-only state dict.

    Accepts keys ``features.N.weight`` (``classifier.*`` ignored), bare
    ``N.weight`` (``vgg16().features.state_dict()``), a dict under
    ``state_dict`` / ``model``, and wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``).
    """
    from torchvision.models import vgg16  # its import costs seconds; only VGG rows need it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights {path} do not exist; give the path of a local torchvision "
                                "vgg16 state dict (e.g. vgg16-397923af.pth)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint or pickled-object files
        raise ValueError(f"{path}: cannot be read as a weights-only torch state dict "
                         f"({exc.__class__.__name__}); give torchvision's vgg16 state dict") from exc
    state = _features_state(blob, path)
    with torch.device("meta"):  # no 138M-parameter random init just to be overwritten
        features = vgg16(weights=None).features
    expected = features.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (VGG16: {tuple(v.shape)})"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(f"{path}: not torchvision VGG16 weights: missing features.{missing[:4]}, unexpected "
                         f"{unexpected[:4]}, wrong shapes {wrong_shape[:2]}; give a vgg16 (not vgg16_bn) state dict")
    features.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return features.eval().requires_grad_(False)


def _features_state(blob, path: Path) -> dict[str, torch.Tensor]:
    blob = encoders.unwrap_state_dict(blob, str(path), "not a state dict of tensors; give torchvision's vgg16 "
                                                       "state dict (keys features.0.weight, ...)")
    return {key.removeprefix("features."): value for key, value in blob.items() if not key.startswith("classifier.")}
