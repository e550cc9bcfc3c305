"""Atomic, self-describing training checkpoints.

A checkpoint holds everything a resumed run needs to continue bit-for-bit on
the CPU: model, optimiser, scheduler, AMP scaler, step (the sampler position is
derived from it), the training generator and the global RNG states. It also
stores the hash of the run's config: a checkpoint from other params is never
resumed by mistake.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import io

KEEP = 2


def path_for(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step-{step:08d}.pt"


def save(ckpt_dir: str | Path, step: int, state: dict) -> Path:
    path = path_for(ckpt_dir, step)
    io.write_torch(path, state)
    for old in sorted(Path(ckpt_dir).glob("step-*.pt"))[:-KEEP]:
        old.unlink()
    return path


def latest(ckpt_dir: str | Path, config_hash: str) -> dict | None:
    """The newest checkpoint written by a run with the same config, or None."""
    for path in sorted(Path(ckpt_dir).glob("step-*.pt"), reverse=True):
        # weights_only=False: RNG states are numpy/python objects; these files are our own.
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("config_hash") == config_hash:
            state["path"] = str(path)
            return state
    return None
