"""Full-reference metrics and the pseudo-MOS built from them.

PSNR, SSIM, MS-SSIM and VIF come from torchmetrics, GMSD from piq; DeepWSD
(:mod:`iqabench.models.deepwsd`) joins them as a label metric only with
user-supplied VGG16 weights (see :func:`compute`). Every value here is "higher
is better": the distances (GMSD, DeepWSD) are negated.

The embedded datasets have no human ratings. Their labels are a consensus of
full-reference metrics against the pristine patch: each metric is z-scored over
the dataset, the z-scores are averaged, and the mean is mapped through the
standard normal CDF to a 0-100 pseudo-MOS. This is a stand-in for human
opinion, and the manifest says so in ``score_source``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from scipy import signal
from scipy.stats import norm
from torch.overrides import TorchFunctionMode

from .models import deepwsd

def _tmf():
    # Imported on first use: torchmetrics adds seconds to every stage that lists the rows (evaluate, mixed,
    # report) but never computes a full-reference score.
    from torchmetrics.functional import image
    return image


# MS-SSIM on small patches: three scales keep every scale above the 11-px window
# (the default five need > 160 px); the weights are the first three of Wang et
# al.'s, renormalised by torchmetrics' "relu" normalisation.
_MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001)


def psnr(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return _tmf().peak_signal_noise_ratio(dist, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return _tmf().structural_similarity_index_measure(dist, ref, data_range=1.0, reduction="none")


def ms_ssim(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return _tmf().multiscale_structural_similarity_index_measure(
        dist, ref, data_range=1.0, reduction="none", betas=_MS_SSIM_BETAS)


def vif(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # VIF exceeds 1 for contrast enhancement (e.g. strong sharpening); as a fidelity
    # label any departure from the reference is a loss, so it is capped at 1.
    return _tmf().visual_information_fidelity(dist, ref, reduction="none").clamp(max=1.0)


def gmsd(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """**Minus** GMSD (Xue et al. 2013): 0 for an unchanged image, negative otherwise.

    piq works on the luma (Y of YIQ) after a 2x average pooling, as the paper's
    code; a 128-px patch gives a 64 x 64 gradient map. piq asserts values in
    [0, 1], which a bicubic downscale can overshoot by a hair: clamp first.
    """
    import piq  # its import pulls in torchvision (~2 s); only GMSD needs it
    return -piq.gmsd(dist.clamp(0, 1), ref.clamp(0, 1), data_range=1.0, reduction="none")


FR_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim, "vif": vif, "gmsd": gmsd,
}
DEEPWSD = "deepwsd"
# What `prepare.label_metrics` may name; deepwsd also needs `prepare.deepwsd_weights`.
LABEL_METRICS = (*FR_METRICS, DEEPWSD)


def compute(dist: torch.Tensor, ref: torch.Tensor, metrics: list[str], batch_size: int = 64,
            deepwsd_weights: str | Path | None = None, dtype: torch.dtype = torch.float32,
            description: str | None = None) -> dict[str, np.ndarray]:
    """Each named metric for every (distorted, reference) pair, in batches; arrays, higher is better.
    ``description``: show a progress bar over the batches under that name.

    Computed in float32 by default: torch's float64 convolutions on the CPU are 10-20x slower (here they
    go through :class:`Float64Windows`, which closes most of that gap). float32 is
    not float64 rounded (SSIM's variances as E[x^2] - E[x]^2, VIF on near-flat patches: up to 1e-4 and 6e-4
    absolute on 128 px patches), and its last bits depend on the CPU's code paths (MKL's AVX-512 vs AVX2: up
    to 4.5e-5). Labels are computed in float64 (``dtype``), whose paths differ by ~1e-16.

    ``deepwsd`` is minus DeepWSD on torchvision VGG16 ``features`` read from
    ``deepwsd_weights`` (a local state dict). The project's own encoder is not
    offered for labels: it is trained on the same photographs, after `prepare`,
    so the labels would come from the model being benchmarked.
    """
    unknown = [m for m in metrics if m not in LABEL_METRICS]
    if unknown:
        raise ValueError(f"unknown full-reference metric(s) {unknown}; choose from {sorted(LABEL_METRICS)}")
    if dist.shape != ref.shape:
        raise ValueError(f"distorted and reference batches differ in shape: {tuple(dist.shape)} vs {tuple(ref.shape)}")
    functions = {m: FR_METRICS[m] for m in metrics if m != DEEPWSD}
    if DEEPWSD in metrics:
        functions[DEEPWSD] = _deepwsd_label_metric(deepwsd_weights, dtype)
    out = {m: [] for m in metrics}
    with torch.no_grad(), Float64Windows():
        starts = range(0, len(dist), batch_size)
        for start in track(starts, description=description or "", disable=description is None):
            d = dist[start:start + batch_size].to(dtype)
            r = ref[start:start + batch_size].to(dtype)
            for m in metrics:
                out[m].append(functions[m](d, r).reshape(-1).cpu())
    return {m: torch.cat(v).numpy() for m, v in out.items()}


class Float64Windows(TorchFunctionMode):
    """Float64 CPU window filters (SSIM's and VIF's Gaussian windows) as FFT products, 7-13x faster.

    torch has no fast float64 convolution on the CPU (oneDNN is float32-only; the fallback unfolds every
    image), which made the float64 labels 95% of `prepare`'s time. Inside this mode a depthwise
    ``conv2d`` (one window per channel, no bias, stride, padding or dilation) on float64 CPU tensors is
    scipy's ``fftconvolve``, which agrees with torch's to ~1e-14, far below the 4 decimals the labels keep;
    every other call runs as it would outside.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            options = {**dict(zip(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), args)),
                       **kwargs}
            x, weight = options["input"], options["weight"]
            if _float64_depthwise(x, weight, options):
                windows = weight.detach().numpy()[None, :, 0, ::-1, ::-1]  # conv2d correlates: flip the windows
                return torch.from_numpy(signal.fftconvolve(x.detach().numpy(), windows, mode="valid", axes=(2, 3)))
        return func(*args, **kwargs)


def _float64_depthwise(x: torch.Tensor, weight: torch.Tensor, options: dict) -> bool:
    plain = options.get("bias") is None and all(
        options.get(key, default) in (default, (default, default))
        for key, default in (("stride", 1), ("padding", 0), ("dilation", 1)))
    return (plain and x.dtype == weight.dtype == torch.float64 and x.device.type == weight.device.type == "cpu"
            and x.dim() == 4 and weight.shape[1] == 1 and options.get("groups", 1) == x.shape[1] == weight.shape[0]
            and x.shape[-2] >= weight.shape[-2] and x.shape[-1] >= weight.shape[-1]  # else torch's own error
            and not (x.requires_grad or weight.requires_grad))


def _deepwsd_label_metric(weights: str | Path | None,
                          dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if weights is None or str(weights) == "":
        raise ValueError(
            "label metric 'deepwsd' needs VGG16 weights: set prepare.deepwsd_weights in params.yaml to a local "
            "torchvision vgg16 state dict (e.g. vgg16-397923af.pth), or drop deepwsd from prepare.label_metrics. "
            "The project encoder (data/encoders/contrique.pt) cannot label the embedded sets: it is trained on the "
            "same photographs, after `prepare`, so the labels would be circular")
    model = deepwsd.from_vgg16(weights).to(dtype)
    return lambda d, r: -model(d, r)


def pseudo_mos(values: dict[str, np.ndarray]) -> np.ndarray:
    """Consensus pseudo-MOS on 0-100 (higher is better) from per-metric values."""
    zs = []
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            # PSNR is infinite for an unchanged image; cap it at the largest finite value.
            finite = v[np.isfinite(v)]
            v = np.where(np.isfinite(v), v, finite.max() if finite.size else 0.0)
        sd = v.std()
        zs.append((v - v.mean()) / sd if sd > 0 else np.zeros_like(v))
    return 100.0 * norm.cdf(np.mean(zs, axis=0))
