"""Full-reference metrics (from torchmetrics) and the pseudo-MOS built from them.

The embedded datasets have no human ratings. Their labels are a consensus of
full-reference metrics against the pristine patch: each metric is z-scored over
the dataset (all are "higher is better"), the z-scores are averaged, and the
mean is mapped through the standard normal CDF to a 0-100 pseudo-MOS. This is
a stand-in for human opinion, and the manifest says so in ``score_source``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.stats import norm
from torchmetrics.functional import image as tmf

# MS-SSIM on small patches: three scales keep every scale above the 11-px window
# (the default five need > 160 px); the weights are the first three of Wang et
# al.'s, renormalised by torchmetrics' "relu" normalisation.
_MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001)


def psnr(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return tmf.peak_signal_noise_ratio(dist, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return tmf.structural_similarity_index_measure(dist, ref, data_range=1.0, reduction="none")


def ms_ssim(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return tmf.multiscale_structural_similarity_index_measure(
        dist, ref, data_range=1.0, reduction="none", betas=_MS_SSIM_BETAS)


def vif(dist: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # VIF exceeds 1 for contrast enhancement (e.g. strong sharpening); as a fidelity
    # label any departure from the reference is a loss, so it is capped at 1.
    return tmf.visual_information_fidelity(dist, ref, reduction="none").clamp(max=1.0)


FR_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim, "vif": vif,
}


def compute(dist: torch.Tensor, ref: torch.Tensor, metrics: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Each named metric for every (distorted, reference) pair, in batches; float64 arrays."""
    unknown = [m for m in metrics if m not in FR_METRICS]
    if unknown:
        raise ValueError(f"unknown full-reference metric(s) {unknown}; choose from {sorted(FR_METRICS)}")
    if dist.shape != ref.shape:
        raise ValueError(f"distorted and reference batches differ in shape: {tuple(dist.shape)} vs {tuple(ref.shape)}")
    out = {m: [] for m in metrics}
    # float32: torch's float64 convolutions on the CPU are ~25x slower, for no change in ranking.
    with torch.no_grad():
        for start in range(0, len(dist), batch_size):
            d = dist[start:start + batch_size].float()
            r = ref[start:start + batch_size].float()
            for m in metrics:
                out[m].append(FR_METRICS[m](d, r).reshape(-1).cpu())
    return {m: torch.cat(v).numpy() for m, v in out.items()}


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
