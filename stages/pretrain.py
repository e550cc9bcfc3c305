"""Stages `pretrain@NAME`: self-supervised pretraining of one quality encoder, NAME a key of params.yaml `pretrain:`.

    python stages/pretrain.py NAME --corpus data/corpus --out data/encoders/NAME.pt
        --history data/encoders/NAME_history.csv --checkpoints data/checkpoints/pretrain-NAME
        [--profile profiles/paper.yaml] [--nproc 8]

(``--profile``: the paper's recipe; ``--nproc 8``: 8 GPUs, torchrun --standalone). dvc.yaml runs it, with
those paths, once per key of ``pretrain:`` (a foreach: contrique, and arniqa, docs/arniqa.md), each with its own
section: ``pretrain.contrique`` is CONTRIQUE's objective, ``pretrain.arniqa``
ARNIQA's (``objective: arniqa``), same loop. A profile is a YAML mapping of
section keys merged over it (``pretrain.NAME.profile`` names one too, so that
``dvc exp run -S pretrain.contrique.profile=profiles/paper.yaml`` runs it;
``--profile`` wins). ``pretrain.NAME.nproc`` (or ``--nproc``) is the number of
processes on this machine: above 1 the script re-executes itself under
``torchrun --standalone --nproc_per_node=N``, so ``dvc exp run -S
pretrain.contrique.nproc=8`` is a DDP run with its outputs and lock like any
other. Under a torchrun you start yourself (multi-node, docs/contrique.md) it is
a rank already and ``nproc`` is not used.

Reads the distorted corpus (``--corpus``; the ``corpus`` source). Writes the encoder (``--out``) and its loss
history (``--history``: step, loss, lr) where dvc.yaml says, which for the rows that read them is
:func:`iqabench.models.encoders.trained_path` and ``history_path`` (tests/test_stage_deps.py holds the two to
the same names), and reports/timings/pretrain-NAME.json (wall time and images/s). Checkpoints go to
``--checkpoints`` (not a DVC output), so a killed run resumes where it stopped when started again with the
same settings; one folder per encoder: runs sharing one prune each other's.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path

import pandas as pd

from iqabench import io, params, stage_paths, timing
from iqabench.models import encoders
from iqabench.training import checkpoint
from iqabench.training.pretrain import NonFiniteLoss, PretrainConfig, train

NOT_CONFIG = {"datasets", "models", "profile", "nproc"}


def read_profile(path: str | os.PathLike, name: str = "NAME") -> dict:
    try:
        overrides = params.read_profile(path)  # the reader params.yaml's checks use: the same mapping
    except params.ParamsError as err:
        raise SystemExit(f"error: {err}") from None
    if "nproc" in overrides:
        raise SystemExit(f"{path}: nproc is how this machine runs the recipe, not part of it; remove it and set "
                         f"pretrain.{name}.nproc in params.yaml (dvc exp run -S pretrain.{name}.nproc=N) or pass "
                         "--nproc N")
    return overrides


def config_from(section: dict, profile: str | os.PathLike | None = None, name: str = "NAME") -> PretrainConfig:
    profile = profile or section.get("profile") or None
    merged = {**section, **(read_profile(profile, name) if profile else {})}
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(merged) - known - NOT_CONFIG)
    if unknown:
        where = f"profile {profile}" if profile else f"params.yaml section pretrain.{name}"
        raise SystemExit(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return PretrainConfig(**{k: v for k, v in merged.items() if k in known})


def torchrun_command(nproc, device: str, argv: list[str], key: str = "pretrain.NAME.nproc") -> list[str] | None:
    """The command that runs this stage on ``nproc`` processes (``key`` names the setting in messages), or None
    when this process is the run."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise SystemExit(f"{key} must be a whole number of processes >= 1, got {nproc!r}")
    if nproc == 1 or "RANK" in os.environ:  # one process, or already a rank of a torchrun
        return None
    import torch  # only here: the common path needs no GPU query
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise SystemExit(f"{key.removesuffix('nproc')}device is 'cuda' but torch sees no GPU; use device: auto or cpu")
    if gpus and nproc > gpus:
        raise SystemExit(f"{key} is {nproc} but this machine has {gpus} GPU(s): one process per GPU; "
                         f"set {key} <= {gpus} (or device: cpu for CPU processes)")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(Path(__file__).resolve()), *argv]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the encoder: a key of params.yaml pretrain:, e.g. contrique or arniqa")
    stage_paths.option(parser, "--corpus", "DIR", "synthesize's distorted corpus (the corpus source reads it)")
    stage_paths.option(parser, "--out", "PT", "written: the encoder file")
    stage_paths.option(parser, "--history", "CSV", "written: its loss history")
    stage_paths.option(parser, "--checkpoints", "DIR", "resume folder (not a DVC output), one per encoder")
    parser.add_argument("--profile", help="YAML of pretrain overrides, e.g. profiles/paper.yaml")
    parser.add_argument("--nproc", type=int, help="processes on this machine (default: the section's nproc, 1)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:  # NAME names a file and a DVC stage: checked as the rows' own encoder paths are
        encoders.trained_path(args.name)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    section = params.section(f"pretrain.{args.name}")
    cfg = config_from(section, args.profile, args.name)  # checked before launching anything
    if args.profile:
        # params.section checked params.yaml's profile; --profile replaces it, so it gets the same checks (keys'
        # types and ranges) here, before anything trains: a bad lr, steps or arch failed deep in training.
        try:
            params.check_profile(args.profile, f"pretrain.{args.name}", section)
        except params.ParamsError as err:
            raise SystemExit(f"error: {err}") from None
    command = torchrun_command(args.nproc if args.nproc is not None else section.get("nproc", 1), cfg.device, argv,
                               key=f"pretrain.{args.name}.nproc")
    if command is not None:
        print("launching:", " ".join(command), flush=True)
        os.execv(command[0], command)  # torchrun takes this process's place: signals and exit code pass through
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    with timing.timed(f"pretrain-{args.name}", enabled=is_main) as timed:
        try:
            history = train(cfg, args.corpus, args.out, args.checkpoints)
        except checkpoint.CheckpointSaveError as err:  # a full disk or read-only folder: one line, earlier ones kept
            raise SystemExit(f"error: pretrain@{args.name}: {err}") from None
        except (ValueError, NonFiniteLoss) as err:
            # The training library names a bad setting "pretrain.KEY" (it does not know the entry): say which
            # entry of params.yaml it is, in one line. ValueErrors naming no setting keep their traceback.
            if isinstance(err, ValueError) and "pretrain." not in str(err):
                raise
            raise SystemExit(f"error: {str(err).replace('pretrain.', f'pretrain.{args.name}.')}") from None
        if is_main:
            # images/s and seconds per log window are wall-clock figures: they go to the timing JSON, not the
            # history CSV (a DVC output), or every re-run would change the encoder's hash and re-run its readers.
            rates = [round(row.pop("images_per_s"), 2) for row in history]
            seconds = [row.pop("seconds", None) for row in history]  # absent in checkpoints of older versions
            timed["images_per_s"] = statistics.median(rates[1:] or rates)  # the first window holds the warm-up
            timed["images_per_s_per_window"] = rates
            # The training compute of every window, also those before a resume: a stage that resumes a finished
            # run (its code changed, not its training) takes a second, but the encoder cost this much.
            timed["training_seconds"] = None if None in seconds else round(sum(seconds), 2)
            io.write_csv(args.history, pd.DataFrame(history))
    if is_main:
        print(f"pretrained {args.name} ({cfg.arch}) for {history[-1]['step']} steps: "
              f"loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}")


if __name__ == "__main__":
    main()
