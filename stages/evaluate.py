"""Stage `evaluate`: the field's protocol on frozen features, within and across datasets.

    python stages/evaluate.py  ->  reports/{within,cross,significance}.csv, reports/metrics.json,
                                   data/eval/{per_split,predictions}.csv, data/models/regressors/MODEL.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

from iqabench import features as features_file
from iqabench import io, manifest, params, regressor, rows, stage_errors, study, timing
from iqabench.evaluation.protocol import undefined_rows


def main() -> None:
    cfg = params.section("evaluate")
    manifests, features = {}, {}
    with stage_errors.one_line("evaluate"):  # a bad manifest cell or a damaged features file: one line
        for ds in cfg["datasets"]:
            manifests[ds] = manifest.read(Path("data/prepared") / ds / "manifest.csv")
            path = Path("data/features") / f"{ds}.npz"
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
                keep = ~undefined_rows(features[ds][model])
                fitted[model] = regressor.fit(features[ds][model][keep], manifests[ds]["score"].to_numpy()[keep],
                                              alpha=alpha, standardize=cfg["standardize"], dataset=ds,
                                              max_short_side=max_short_side, model=model)
        reports, data = Path("reports"), Path("data/eval")
        io.write_csv(reports / "within.csv", result.within.round(4))
        io.write_csv(reports / "cross.csv", result.cross.round(4))
        io.write_csv(reports / "significance.csv", result.significance.round(4))
        io.write_json(reports / "metrics.json", study.metrics_dict(result))
        io.write_csv(data / "per_split.csv", result.per_split)
        io.write_csv(data / "predictions.csv", result.predictions)
        for model, fit in fitted.items():
            fit.save(regressor.path_for(model))
    print(result.within[["model", "dataset", "n_images", "n_missing", "srcc", "plcc", "krcc"]].round(3)
          .to_string(index=False))


if __name__ == "__main__":
    # No arguments (it reads params.yaml): --help shows the docstring, a stray one is refused, not ignored.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
