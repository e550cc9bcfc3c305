"""Stage `pretrain`: CONTRIQUE-style contrastive pretraining of the quality encoder.

    python stages/pretrain.py                                    # CPU or one GPU, params.yaml
    python stages/pretrain.py --profile profiles/paper.yaml      # the paper's recipe
    python stages/pretrain.py --profile profiles/paper.yaml --nproc 8   # 8 GPUs (torchrun --standalone)

A profile is a YAML mapping of ``pretrain`` keys merged over params.yaml's
section (``pretrain.profile`` in params.yaml names one too, so that
``dvc exp run -S pretrain.profile=profiles/paper.yaml`` runs it; ``--profile``
wins). ``pretrain.nproc`` (or ``--nproc``) is the number of processes on this
machine: above 1 the script re-executes itself under ``torchrun --standalone
--nproc_per_node=N``, so ``dvc exp run -S pretrain.nproc=8`` is a DDP run
with its outputs and lock like any other. Under a torchrun you start yourself
(multi-node, docs/contrique.md) it is a rank already and ``nproc`` is not
used. Writes data/models/encoder.pt and data/models/pretrain_history.csv.
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
import sys
from pathlib import Path

import pandas as pd
import yaml

from iqabench import io, params, timing
from iqabench.training.pretrain import PretrainConfig, train

OUT = Path("data/models")
NOT_CONFIG = {"datasets", "models", "profile", "nproc"}


def read_profile(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"pretrain profile {path} does not exist; see profiles/ for the shipped ones")
    with open(path, encoding="utf-8") as fh:
        overrides = yaml.safe_load(fh) or {}
    if not isinstance(overrides, dict):
        raise SystemExit(f"{path}: a profile is a mapping of pretrain keys, got {type(overrides).__name__}")
    if "nproc" in overrides:
        raise SystemExit(f"{path}: nproc is how this machine runs the recipe, not part of it; remove it and set "
                         "pretrain.nproc in params.yaml (dvc exp run -S pretrain.nproc=N) or pass --nproc N")
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


def torchrun_command(nproc, device: str, argv: list[str]) -> list[str] | None:
    """The command that runs this stage on ``nproc`` processes, or None when this process is the run."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise SystemExit(f"pretrain.nproc must be a whole number of processes >= 1, got {nproc!r}")
    if nproc == 1 or "RANK" in os.environ:  # one process, or already a rank of a torchrun
        return None
    import torch  # only here: the common path needs no GPU query
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise SystemExit("pretrain.device is 'cuda' but torch sees no GPU; use device: auto or cpu")
    if gpus and nproc > gpus:
        raise SystemExit(f"pretrain.nproc is {nproc} but this machine has {gpus} GPU(s): one process per GPU; "
                         f"set pretrain.nproc <= {gpus} (or device: cpu for CPU processes)")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(Path(__file__).resolve()), *argv]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="YAML of pretrain overrides, e.g. profiles/paper.yaml")
    parser.add_argument("--section", default="pretrain",
                        help="params.yaml section to read, e.g. pretrain_arniqa (the ARNIQA row)")
    parser.add_argument("--out", type=Path, default=OUT / "encoder.pt", help="encoder file to write")
    parser.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/pretrain"),
                        help="checkpoint folder, one per encoder: runs sharing one prune each other's checkpoints")
    parser.add_argument("--nproc", type=int, help="processes on this machine (default: the section's nproc, 1)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    section = params.section(args.section)
    cfg = config_from(section, args.profile)  # checked before launching anything
    command = torchrun_command(args.nproc if args.nproc is not None else section.get("nproc", 1), cfg.device, argv)
    if command is not None:
        print("launching:", " ".join(command), flush=True)
        os.execv(command[0], command)  # torchrun takes this process's place: signals and exit code pass through
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
