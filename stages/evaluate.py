"""Stage `evaluate`: the field's protocol on frozen features, within and across datasets.

    python stages/evaluate.py --prepared data/prepared --features data/features --eval data/eval
        --regressors data/models/regressors --within reports/within.csv --cross reports/cross.csv
        --significance reports/significance.csv --metrics reports/metrics.json

For each dataset it reads PREPARED/DATASET/manifest.csv and FEATURES/DATASET.npz; it writes the four tables,
EVAL/per_split.csv, EVAL/predictions.csv and one REGRESSORS/MODEL.npz per row.
"""
from __future__ import annotations

import argparse

from iqabench import features as features_file
from iqabench import io, manifest, params, regressor, rows, stage_errors, stage_paths, study, timing
from iqabench.features import undefined_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.option(parser, "--prepared", "DIR", "prepare's outputs: DIR/DATASET/manifest.csv")
    stage_paths.option(parser, "--features", "DIR", "extract's outputs: DIR/DATASET.npz")
    stage_paths.option(parser, "--eval", "DIR", "written: per_split.csv and predictions.csv")
    stage_paths.option(parser, "--regressors", "DIR", "written: one fitted regressor MODEL.npz per row")
    stage_paths.option(parser, "--within", "CSV", "written: the within-dataset table")
    stage_paths.option(parser, "--cross", "CSV", "written: the cross-dataset table")
    stage_paths.option(parser, "--significance", "CSV", "written: the paired comparisons")
    stage_paths.option(parser, "--metrics", "JSON", "written: the DVC metrics")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = params.section("evaluate")
    manifests, features = {}, {}
    with stage_errors.one_line("evaluate"):  # a bad manifest cell or a damaged features file: one line
        for ds in cfg["datasets"]:
            manifests[ds] = manifest.read(args.prepared / ds / "manifest.csv")
            path = args.features / f"{ds}.npz"
            stored = features_file.load_for(path, manifests[ds])  # its images, in the manifest's order
            features[ds] = {m: stored[m] for m in cfg["models"] if m in stored}  # FR rows: sets with references
            absent = [m for m in cfg["models"] if m not in features[ds] and not rows.is_full_reference(m)]
            if absent:
                raise features_file.FeaturesFileError(f"{path} has no features of {absent}; "
                                                      f"run `dvc repro extract@{ds}`")
    with timing.timed("evaluate"):
        try:
            result = study.run(features, manifests, cfg)
        except ValueError as exc:  # data the protocol cannot evaluate (too few images, ...): the message names it
            raise SystemExit(f"error: evaluate: {exc}") from None
        # The regressors `iqabench score --model M` uses: fitted on every image of one dataset (those with defined
        # features). Full-reference rows have none: a user's photo comes without its pristine reference. Fitted
        # before anything is written, so a failure leaves the last good reports in place.
        ds = cfg["regressor_dataset"]
        max_short_side = params.section("extract")["max_short_side"]  # how the features were read; score reads so
        runs = result.per_split[result.per_split["dataset"] == ds]
        fitted = {}
        for model in cfg["models"]:
            if not rows.is_full_reference(model):
                alpha = float(runs.loc[runs["model"] == model, "alpha"].median())  # what the protocol chose
                keep = ~undefined_images(features[ds][model])
                fitted[model] = regressor.fit(features[ds][model][keep], manifests[ds]["score"].to_numpy()[keep],
                                              alpha=alpha, standardize=cfg["standardize"], dataset=ds,
                                              max_short_side=max_short_side, model=model)
        io.write_csv(args.within, result.within.round(4))
        io.write_csv(args.cross, result.cross.round(4))
        io.write_csv(args.significance, result.significance.round(4))
        io.write_json(args.metrics, study.metrics_dict(result))
        io.write_csv(args.eval / "per_split.csv", result.per_split)
        io.write_csv(args.eval / "predictions.csv", result.predictions)
        for model, fit in fitted.items():
            fit.save(regressor.path_for(model, args.regressors))
    print(result.within[["model", "dataset", "n_images", "n_missing", "srcc", "plcc", "krcc"]].round(3)
          .to_string(index=False))


if __name__ == "__main__":
    main()
