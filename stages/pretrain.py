"""Stage `pretrain`: CONTRIQUE-style contrastive pretraining of the quality encoder.

    python stages/pretrain.py                            # CPU or one GPU
    torchrun --nproc_per_node=N stages/pretrain.py       # DDP, same code

Writes data/models/encoder.pt and data/models/pretrain_history.csv. Checkpoints
go to data/checkpoints/pretrain (not a DVC output), so a killed run resumes.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from iqabench import io, params, timing
from iqabench.training.pretrain import PretrainConfig, train

OUT = Path("data/models")


def config_from(section: dict) -> PretrainConfig:
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(section) - known - {"datasets", "models"})
    if unknown:
        raise SystemExit(f"params.yaml pretrain: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return PretrainConfig(**{k: v for k, v in section.items() if k in known})


def main() -> None:
    cfg = config_from(params.section("pretrain"))
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    with timing.timed("pretrain", enabled=is_main):
        history = train(cfg, Path("data/corpus"), OUT / "encoder.pt", Path("data/checkpoints/pretrain"))
        if is_main:
            io.write_csv(OUT / "pretrain_history.csv", pd.DataFrame(history))
    if is_main:
        print(f"pretrained {cfg.arch} for {cfg.steps} steps: loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}")


if __name__ == "__main__":
    main()
