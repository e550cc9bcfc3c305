"""Stage `evaluate`: the field's protocol on frozen features, within and across datasets.

    python stages/evaluate.py  ->  reports/{within,cross,significance}.csv, reports/metrics.json,
                                   data/eval/{per_split,predictions}.csv, data/models/readout.npz
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from iqabench import io, manifest, params, readout, study, timing


def main() -> None:
    cfg = params.section("evaluate")
    manifests, features = {}, {}
    for ds in cfg["datasets"]:
        manifests[ds] = manifest.read(Path("data/prepared") / ds / "manifest.csv")
        with np.load(Path("data/features") / f"{ds}.npz") as blob:
            features[ds] = {m: blob[m] for m in cfg["models"]}
    with timing.timed("evaluate"):
        result = study.run(features, manifests, cfg)
        reports, data = Path("reports"), Path("data/eval")
        io.write_csv(reports / "within.csv", result.within.round(4))
        io.write_csv(reports / "cross.csv", result.cross.round(4))
        io.write_csv(reports / "significance.csv", result.significance.round(4))
        io.write_json(reports / "metrics.json", study.metrics_dict(result))
        io.write_csv(data / "per_split.csv", result.per_split)
        io.write_csv(data / "predictions.csv", result.predictions)
        # The regressor `iqabench score` uses: fitted on every image of one dataset.
        ds = cfg["readout_dataset"]
        readout.fit(features[ds]["contrique"], manifests[ds]["score"].to_numpy(), alpha=cfg["alphas"][0],
                    standardize=cfg["standardize"], dataset=ds).save(Path("data/models/readout.npz"))
    print(result.within[["model", "dataset", "n_images", "srcc", "plcc", "krcc"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
