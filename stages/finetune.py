"""Stage `finetune`: end-to-end fine-tuning of the pretrained encoder on each protocol split.

    python stages/finetune.py --prepared data/prepared --per-split data/eval/per_split.csv
        --checkpoints data/checkpoints/finetune --csv reports/finetune.csv --md reports/finetune.md [--params YAML]

Reads the ``finetune`` section (``datasets`` from the top level; ``seed`` from ``evaluate``, whose null is the
top-level seed, and ``test_frac`` from ``evaluate`` unless the section sets its own, so the splits are the
protocol's), PREPARED/DATASET/manifest.csv and evaluate's per-split frozen-ridge rows;
writes the two reports (and reports/timings/finetune.json). Checkpoints go to CHECKPOINTS/<dataset>/split-<k>/
(not a DVC output): a killed run resumes, and finished splits are not re-run.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from iqabench import io, manifest, params, params_schema, rows, stage_errors, stage_paths, timing
from iqabench.models import encoders, preprocessing
from iqabench.training import checkpoint
from iqabench.training.finetune import FinetuneConfig, finetune_dataset

NOT_CONFIG = {"datasets", "models", "model"}   # model: the row fine-tuned


def config_from(section: dict, test_frac: float) -> FinetuneConfig:
    """``test_frac`` defaults to evaluate's, so that split k is the protocol's split k."""
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(section) - known - NOT_CONFIG)
    if unknown:
        raise SystemExit(f"params finetune: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return FinetuneConfig(**({"test_frac": test_frac} | {k: v for k, v in section.items() if k in known}))


def frozen_medians(per_split_path: Path, cfg: FinetuneConfig, evaluate_cfg: dict, model: str) -> pd.DataFrame:
    """Median frozen-ridge ``model`` metrics per dataset over split indices 0..n_splits-1.

    Empty when the evaluate stage has not run or used other splits (a validation split, another test_frac,
    official or ARNIQA's splits). The seed is evaluate's already (``main``): no other seed to compare.
    """
    if not per_split_path.is_file():
        return pd.DataFrame(columns=["dataset", "frozen_srcc", "frozen_plcc"])
    frame = pd.read_csv(per_split_path)
    same_splits = (evaluate_cfg["val_frac"] == 0.0 and evaluate_cfg["test_frac"] == cfg.test_frac
                   and not evaluate_cfg["official_splits"] and not evaluate_cfg["arniqa_splits"])
    frame = frame[(frame["model"] == model) & (frame["split"] < cfg.n_splits)]
    if not same_splits or frame.empty:
        return pd.DataFrame(columns=["dataset", "frozen_srcc", "frozen_plcc"])
    medians = frame.groupby("dataset")[["srcc", "plcc"]].median().reset_index()
    return medians.rename(columns={"srcc": "frozen_srcc", "plcc": "frozen_plcc"})


def markdown(per_split: pd.DataFrame, frozen: pd.DataFrame, cfg: FinetuneConfig, model: str) -> str:
    summary = per_split.groupby("dataset", sort=False).agg(
        n_splits=("split", "size"), n_train=("n_train", "median"), n_test=("n_test", "median"),
        srcc=("srcc", "median"), plcc=("plcc", "median"), krcc=("krcc", "median"), rmse=("rmse", "median"),
    ).reset_index().merge(frozen, on="dataset", how="left")
    lines = [
        "# End-to-end fine-tuning vs frozen ridge",
        "",
        f"Median over {cfg.n_splits} content-disjoint splits (the protocol's splits 0..{cfg.n_splits - 1}, seed "
        f"{cfg.seed}); {cfg.steps} AdamW steps of {cfg.batch_size} x {cfg.crop} px crops, lr encoder "
        f"{cfg.lr_encoder:g} / head {cfg.lr_head:g}, {cfg.loss} loss, head on the {cfg.head} feature. "
        f"Frozen = the evaluate stage's `{model}` ridge on the same splits.",
        "",
        "| dataset | splits | n_train | n_test | SRCC | PLCC | KRCC | RMSE | frozen SRCC | frozen PLCC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples():
        frozen_cells = [f"{v:.3f}" if pd.notna(v) else "n/a" for v in (row.frozen_srcc, row.frozen_plcc)]
        lines.append(f"| {row.dataset} | {row.n_splits} | {row.n_train:.0f} | {row.n_test:.0f} | {row.srcc:.3f} | "
                     f"{row.plcc:.3f} | {row.krcc:.3f} | {row.rmse:.3f} | {' | '.join(frozen_cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stage_paths.option(parser, "--prepared", "DIR", "prepare's outputs: DIR/DATASET/manifest.csv")
    stage_paths.option(parser, "--per-split", "CSV", "evaluate's per-split frozen-ridge rows (compared with)")
    stage_paths.option(parser, "--checkpoints", "DIR", "resume folder (not a DVC output): DIR/DATASET/split-K/")
    stage_paths.option(parser, "--csv", "CSV", "written: one row per dataset and split")
    stage_paths.option(parser, "--md", "MD", "written: the medians beside the frozen ridge's")
    stage_paths.params_option(parser)
    args = parser.parse_args(argv)
    evaluate_cfg = params.section("evaluate", args.params)
    section = params.section("finetune", args.params)
    # The protocol's splits: evaluate's seed (evaluate.seed, or the top-level one when that is null) and test_frac.
    cfg = config_from({**section, "seed": evaluate_cfg["seed"]}, float(evaluate_cfg["test_frac"]))
    # params.section fills no defaults into a dataclass section (finetune): the stage's own key takes the schema's.
    model = section.get("model", params_schema.dataclass_section("finetune")["model"].default)
    manifests = {ds: args.prepared / ds / "manifest.csv" for ds in section["datasets"]}
    # Inputs checked before any split trains: every manifest (a bad cell), then the encoder, which must be read
    # as CONTRIQUE's preprocessing reads it (a published ARNIQA or Re-IQA file is refused).
    with stage_errors.one_line("finetune"):
        frames = {ds: manifest.read(path) for ds, path in manifests.items()}
    with stage_errors.one_line("finetune", ValueError, FileNotFoundError):
        encoder = rows.encoder_path(model)
        encoders.load(encoder, read_as=preprocessing.CONTRIQUE)
    with timing.timed("finetune") as timed:
        results = []
        for ds, frame in frames.items():
            # A diverging loss (lr too high) is a setting to change, not a bug: one line naming dataset and split.
            with stage_errors.one_line("finetune", FloatingPointError, checkpoint.CheckpointSaveError):
                results.append(finetune_dataset(cfg, frame, encoder, args.checkpoints, dataset=ds,
                                                manifest_path=manifests[ds]))
        per_split = pd.concat(results, ignore_index=True)
        # Each split's training seconds (kept through a resume) are wall-clock figures: they go to the timing
        # JSON, not reports/finetune.csv (a DVC output), whose bytes then change only with the results.
        timed["seconds_per_split"] = per_split["seconds"].round(2).tolist()
        timed["training_seconds"] = round(float(per_split["seconds"].sum()), 2)
        per_split = per_split.drop(columns="seconds")
        frozen = frozen_medians(args.per_split, cfg, evaluate_cfg, model)
        io.write_csv(args.csv, per_split.round(4))
        text = markdown(per_split, frozen, cfg, model)
        io.write_text(args.md, text)
    print(text)


if __name__ == "__main__":
    main()
