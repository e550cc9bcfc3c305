"""Stage `pretrain`: CONTRIQUE-style contrastive pretraining of the quality encoder.

    python stages/pretrain.py                                    # CPU or one GPU, params.yaml
    python stages/pretrain.py --profile profiles/paper.yaml      # the paper's recipe
    torchrun --nproc_per_node=8 stages/pretrain.py --profile profiles/paper.yaml

A profile is a YAML mapping of ``pretrain`` keys merged over params.yaml's
section (``pretrain.profile`` in params.yaml names one too, so that
``dvc exp run -S pretrain.profile=profiles/paper.yaml`` runs it; ``--profile``
wins). Writes data/models/encoder.pt and data/models/pretrain_history.csv.
Checkpoints go to data/checkpoints/pretrain (not a DVC output), so a killed run
resumes where it stopped when started again with the same settings.

Stage `pretrain_arniqa` runs the same script on another section of
params.yaml, the ARNIQA row (docs/arniqa.md)::

    python stages/pretrain.py --section pretrain_arniqa --out data/models/encoder-arniqa.pt \
        --checkpoints data/checkpoints/arniqa

A second encoder's history and timing take the suffix of its file name
(pretrain-arniqa_history.csv, reports/timings/pretrain-arniqa.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import pandas as pd
import yaml

from iqabench import io, params, timing
from iqabench.training.pretrain import PretrainConfig, train

OUT = Path("data/models")
NOT_CONFIG = {"datasets", "models", "profile"}


def read_profile(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"pretrain profile {path} does not exist; see profiles/ for the shipped ones")
    with open(path, encoding="utf-8") as fh:
        overrides = yaml.safe_load(fh) or {}
    if not isinstance(overrides, dict):
        raise SystemExit(f"{path}: a profile is a mapping of pretrain keys, got {type(overrides).__name__}")
    return overrides


def config_from(section: dict, profile: str | os.PathLike | None = None) -> PretrainConfig:
    profile = profile or section.get("profile") or None
    merged = {**section, **(read_profile(profile) if profile else {})}
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(merged) - known - NOT_CONFIG)
    if unknown:
        where = f"profile {profile}" if profile else "params.yaml pretrain section"
        raise SystemExit(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return PretrainConfig(**{k: v for k, v in merged.items() if k in known})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="YAML of pretrain overrides, e.g. profiles/paper.yaml")
    parser.add_argument("--section", default="pretrain",
                        help="params.yaml section to read, e.g. pretrain_arniqa (the ARNIQA row)")
    parser.add_argument("--out", type=Path, default=OUT / "encoder.pt", help="encoder file to write")
    parser.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/pretrain"),
                        help="checkpoint folder, one per encoder: runs sharing one prune each other's checkpoints")
    args = parser.parse_args(argv)
    cfg = config_from(params.section(args.section), args.profile)
    suffix = args.out.stem.removeprefix("encoder")
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    with timing.timed(f"pretrain{suffix}", enabled=is_main):
        history = train(cfg, Path("data/corpus"), args.out, args.checkpoints)
        if is_main:
            io.write_csv(args.out.with_name(f"pretrain{suffix}_history.csv"), pd.DataFrame(history))
    if is_main:
        print(f"pretrained {cfg.arch} for {history[-1]['step']} steps: "
              f"loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}")


if __name__ == "__main__":
    main()
