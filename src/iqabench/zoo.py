"""Feature-function builders of the encoder rows; the rows themselves are declared in :mod:`iqabench.rows`.

A builder is ``(seed, device) -> feature function`` (N x 3 x H x W in [0, 1]
-> N x D), called when a stage or ``iqabench score`` needs the row, so a row
whose file is absent costs nothing until it is used.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch

from .models import encoders
from .models.preprocessing import CONTRIQUE, Preprocessing, pooled_features

Builder = Callable[[int, "str | torch.device"], Callable[[torch.Tensor], torch.Tensor]]


def _on(encoder: encoders.Encoder, device) -> encoders.Encoder:
    return encoder.to(device, memory_format=torch.channels_last)


def encoder_file(path: str | Path, preprocessing: Preprocessing = CONTRIQUE) -> Builder:
    """Pooled features of the encoder in ``path`` (any layout :func:`encoders.load` reads)."""
    def build(seed: int = 0, device="cpu"):
        encoder = encoders.load(path, read_as=preprocessing)
        return partial(pooled_features, _on(encoder, device), preprocessing=preprocessing)
    # What fine-tuning needs to know: one encoder file, read with this preprocessing.
    build.encoder_path, build.preprocessing = Path(path), preprocessing
    return build


def random_weights(like: str | Path) -> Builder:
    """The architecture of the encoder in ``like`` with seeded random weights: what pretraining buys."""
    def build(seed: int = 0, device="cpu"):
        config = encoders.load(like).config()
        torch.manual_seed(seed)
        return partial(pooled_features, _on(encoders.Encoder(**config).eval(), device))
    return build


def concatenated(*parts: tuple[str | Path, Preprocessing]) -> Builder:
    """Several encoders' pooled features side by side, each with its own preprocessing (Re-IQA's feature)."""
    def build(seed: int = 0, device="cpu"):
        functions = [encoder_file(path, preprocessing)(seed, device) for path, preprocessing in parts]

        def features(images: torch.Tensor) -> torch.Tensor:
            return torch.cat([fn(images) for fn in functions], dim=1)
        return features
    return build
