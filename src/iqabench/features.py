"""Frozen features for every image of a manifest, with an encoder's readout."""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from . import images
from .models.encoders import Encoder, readout


@torch.no_grad()
def extract(encoder: Encoder, frame: pd.DataFrame, *, batch_size: int = 64, device: str | torch.device = "cpu",
            bf16: bool = False, description: str = "extracting") -> np.ndarray:
    """CONTRIQUE readout (full + half scale) for each manifest row, float32 N x 2C.

    Images are batched with others of the same size, so datasets of mixed sizes
    (CLIVE, SPAQ) are read at their own resolution. ``bf16`` turns on bfloat16
    autocast, about 3x faster at inference on CPUs with bfloat16 support.
    """
    device = torch.device(device)
    encoder = encoder.to(device, memory_format=torch.channels_last).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = np.zeros((len(frame), 2 * encoder.out_dim), dtype=np.float32)
    pending: dict[tuple, list[tuple[int, torch.Tensor]]] = {}

    def flush(shape: tuple) -> None:
        rows, imgs = zip(*pending.pop(shape))
        batch = torch.stack(imgs).to(device).contiguous(memory_format=torch.channels_last)
        with autocast:
            out[list(rows)] = readout(encoder, batch).float().cpu().numpy()
        progress.advance(task, len(rows))

    with Progress() as progress:
        task = progress.add_task(description, total=len(frame))
        for i, path in enumerate(frame["image"]):
            img = images.load(path)
            pending.setdefault(tuple(img.shape), []).append((i, img))
            if len(pending[tuple(img.shape)]) == batch_size:
                flush(tuple(img.shape))
        for shape in list(pending):
            flush(shape)
    return out
