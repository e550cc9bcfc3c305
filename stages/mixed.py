"""Stage `mixed`: MonotonicIQA mixed-dataset training vs naive pooling, on one model's frozen features.

    python stages/mixed.py  ->  reports/mixed.csv, reports/mixed.md

Splits are the `evaluate` stage's (its n_splits, test_frac, val_frac, official_splits, arniqa_splits and
seed, which defaults to the top-level one), so split s here has the same test images as split s there.
Images on which `mixed.model` is undefined (NaN features) are dropped from those splits and counted
(`n_missing`), as `evaluate` does; too few left stops the stage before it writes anything.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from iqabench import io, mixed, mixed_report, params, stage_errors, timing


def main(params_path: str | None = None) -> None:
    cfg = params.section("mixed", params_path)
    protocol = params.section("evaluate", params_path)
    model = cfg.get("model", "contrique")
    train_cfg = mixed.TrainConfig.from_params(cfg)
    # Bad input (a manifest cell, a damaged features file, too few images left to split): one line, nothing written.
    with stage_errors.one_line("mixed", mixed.MixedInputError):
        features, manifests = mixed.load_features("data/features", "data/prepared", cfg["datasets"], model)
        with timing.timed("mixed"):
            per_split = mixed.run(features, manifests, train_cfg, n_splits=protocol["n_splits"],
                                  test_frac=protocol["test_frac"], val_frac=protocol.get("val_frac", 0.0),
                                  seed=protocol["seed"], logistic=protocol["logistic"],
                                  official=protocol.get("official_splits", False),
                                  arniqa_splits=protocol.get("arniqa_splits", ""),
                                  methods=cfg.get("methods", mixed.METHODS), model=model, show_progress=True)
            summary = mixed_report.summarise(per_split)
            within = Path("reports/within.csv")
            if within.is_file():
                summary = pd.concat([summary, mixed_report.ridge_rows(pd.read_csv(within), model)], ignore_index=True)
            # Ridge rows have no n_train/n_test (and n_missing only from a within.csv that has it): no float counts.
            summary = summary.astype({"n_train": "Int64", "n_test": "Int64", "n_missing": "Int64"})
            paired = mixed_report.paired_srcc(per_split)
            io.write_csv("reports/mixed.csv", summary.assign(model=model).round(4))
            io.write_text("reports/mixed.md", mixed_report.markdown(summary, paired, model=model,
                                                                  logistic=protocol["logistic"]))
    print(summary[["dataset", "method", "srcc", "plcc"]].round(3).to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="?", help="an alternative params file, e.g. for a dry run (default params.yaml)")
    main(parser.parse_args().params)
