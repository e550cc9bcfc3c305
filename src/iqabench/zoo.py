"""The encoders a study compares, by name: the table rows.

``contrique`` is the encoder the `pretrain` stage trained; ``random`` is the
same architecture with seeded random weights, so that what pretraining buys is
visible; ``file:PATH`` is any iqabench encoder file or torchvision-layout
ResNet state dict given by path.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .models import encoders

PRETRAINED = Path("data/models/encoder.pt")


def load_model(name: str, seed: int = 0, pretrained: str | Path = PRETRAINED) -> encoders.Encoder:
    if name == "contrique":
        return encoders.load(pretrained)
    if name == "random":
        config = encoders.load(pretrained).config()
        torch.manual_seed(seed)
        return encoders.Encoder(**config).eval()
    if name.startswith("file:"):
        return encoders.load(name[len("file:"):])
    raise ValueError(f"unknown model {name!r}; use 'contrique', 'random' or 'file:PATH'")
