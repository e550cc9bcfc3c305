"""Stage `mixed`: MonotonicIQA mixed-dataset training vs naive pooling, on one model's frozen features.

    python stages/mixed.py --features data/features --prepared data/prepared --within reports/within.csv
        --csv reports/mixed.csv --md reports/mixed.md [--params YAML]

For each dataset it reads FEATURES/DATASET.npz and PREPARED/DATASET/manifest.csv, and evaluate's within-dataset
table (its ridge rows are set beside these, when it is there); it writes the table and its markdown.

Splits are the `evaluate` stage's (its n_splits, test_frac, val_frac, official_splits, arniqa_splits and
seed, which defaults to the top-level one), so split s here has the same test images as split s there.
Images on which `mixed.model` is undefined (NaN features) are dropped from those splits and counted
(`n_missing`), as `evaluate` does; too few left stops the stage before it writes anything.
"""
from __future__ import annotations

import argparse

import pandas as pd

from iqabench import io, mixed, mixed_report, params, params_schema, stage_errors, stage_paths, timing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.option(parser, "--features", "DIR", "extract's outputs: DIR/DATASET.npz")
    stage_paths.option(parser, "--prepared", "DIR", "prepare's outputs: DIR/DATASET/manifest.csv")
    stage_paths.option(parser, "--within", "CSV", "evaluate's within-dataset table (its ridge rows, when there)")
    stage_paths.option(parser, "--csv", "CSV", "written: the table")
    stage_paths.option(parser, "--md", "MD", "written: its markdown")
    stage_paths.params_option(parser)
    args = parser.parse_args(argv)
    cfg = params.section("mixed", args.params)
    protocol = params.section("evaluate", args.params)
    # params.section fills no defaults into a dataclass section (mixed): the stage's own keys take the schema's.
    stage_keys = params_schema.dataclass_section("mixed")
    model = cfg.get("model", stage_keys["model"].default)
    train_cfg = mixed.TrainConfig.from_params(cfg)
    # Bad input (a manifest cell, a damaged features file, too few images left to split): one line, nothing written.
    with stage_errors.one_line("mixed", mixed.MixedInputError):
        features, manifests = mixed.load_features(args.features, args.prepared, cfg["datasets"], model)
        with timing.timed("mixed"):
            per_split = mixed.run(features, manifests, train_cfg, n_splits=protocol["n_splits"],
                                  test_frac=protocol["test_frac"], val_frac=protocol["val_frac"],
                                  seed=protocol["seed"], logistic=protocol["logistic"],
                                  official=protocol["official_splits"], arniqa_splits=protocol["arniqa_splits"],
                                  methods=cfg.get("methods", stage_keys["methods"].default), model=model,
                                  show_progress=True)
            summary = mixed_report.summarise(per_split)
            if args.within.is_file():
                summary = pd.concat([summary, mixed_report.ridge_rows(pd.read_csv(args.within), model)],
                                    ignore_index=True)
            # Ridge rows have no n_train/n_test (and n_missing only from a within.csv that has it): no float counts.
            summary = summary.astype({"n_train": "Int64", "n_test": "Int64", "n_missing": "Int64"})
            paired = mixed_report.paired_srcc(per_split)
            io.write_csv(args.csv, summary.assign(model=model).round(4))
            io.write_text(args.md, mixed_report.markdown(summary, paired, model=model, logistic=protocol["logistic"]))
    print(summary[["dataset", "method", "srcc", "plcc"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
