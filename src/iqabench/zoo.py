"""The encoders a study compares, by name: the table rows.

``contrique`` is the encoder the `pretrain` stage trained; ``arniqa`` the one
the `pretrain_arniqa` stage trained (the same architecture, ARNIQA's objective);
``random`` is the
same architecture with seeded random weights, so that what pretraining buys is
visible; ``file:PATH`` is any iqabench encoder file or torchvision-layout
ResNet state dict given by path. ``brisque``, ``niqe`` and the full-reference
rows ``fr:psnr`` / ``fr:ssim`` / ``fr:ms_ssim`` / ``fr:vif`` / ``fr:gmsd`` /
``fr:deepwsd`` / ``fr:deepwsd-vgg16:PATH`` are the baselines (:mod:`iqabench.baselines`).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from . import baselines
from .features import FeatureFn
from .models import encoders

PRETRAINED = Path("data/models/encoder.pt")
ARNIQA = Path("data/models/encoder-arniqa.pt")  # the `pretrain_arniqa` stage's encoder


def load_model(name: str, seed: int = 0, pretrained: str | Path = PRETRAINED) -> encoders.Encoder:
    if name == "contrique":
        return encoders.load(pretrained)
    if name == "arniqa":
        return encoders.load(ARNIQA)
    if name == "random":
        config = encoders.load(pretrained).config()
        torch.manual_seed(seed)
        return encoders.Encoder(**config).eval()
    if name.startswith("file:"):
        return encoders.load(name[len("file:"):])
    raise ValueError(f"unknown model {name!r}; use 'contrique', 'arniqa', 'random', 'file:PATH' or a baseline "
                     f"({', '.join(baselines.NAMES)})")


def feature_fn(name: str, seed: int = 0, device: str | torch.device = "cpu") -> FeatureFn:
    """What the `extract` stage computes for a model: N x 3 x H x W in [0, 1] -> N x D features."""
    if baselines.is_baseline(name):
        return baselines.feature_fn(name, device)
    encoder = load_model(name, seed).to(device, memory_format=torch.channels_last)
    return partial(encoders.readout, encoder)
