"""Benchmark: how much of the embedded sets' within-dataset SRCC is the photograph, not the distortion.

The embedded sets cut each of 4 photographs into 128 px tiles and use each tile as its own reference
(``content_id`` = tile, e.g. ``astronaut-r0c256``), so the protocol's content-disjoint splits never put a
tile on both sides, but every test split holds tiles of the photographs the ridge was fitted on, and
neighbouring tiles share scene, camera and noise. This script measures that, on the features and
manifests the pipeline made, under params.yaml's `evaluate` settings:

- ``protocol``: the headline, median SRCC over the protocol's splits (as `reports/within.csv`);
- ``by_photo``: leave one photograph out (4 folds: train on 3 photographs, test on the 4th), median SRCC;
- ``photo_only``: a ridge on the one-hot photograph alone, on the protocol's splits: what knowing the
  photograph is worth, the floor a row gets without seeing any distortion.

A fold that tests on one photograph also narrows the test scores' range, so not all of the drop from
``protocol`` to ``by_photo`` is leakage; rows that read the distortion (the full-reference ones) barely
move. Writes reports/benchmarks/photo_disjoint.{json,md}. Runs in seconds after `dvc repro`:

    python benchmarks/photo_disjoint.py [--datasets synthetic-single synthetic-mixed]
"""
from __future__ import annotations

import argparse
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from iqabench import features, io, manifest, params
from iqabench.evaluation import run_splits, score_run
from iqabench.evaluation.splits import Split
from iqabench.provenance import stamp, stamp_line

TILE = re.compile(r"^(?P<photo>.+)-r\d+c\d+$")  # datasets/embedded.content_patches names tiles so


def photo_of(content_ids: pd.Series, where: str) -> np.ndarray:
    found = content_ids.astype(str).str.extract(TILE)["photo"]
    if found.isna().any():
        raise SystemExit(f"error: {where}: content_id {content_ids[found.isna()].iloc[0]!r} is not an embedded "
                         "tile (PHOTO-rTOPcLEFT); this benchmark is for the embedded sets")
    return found.to_numpy()


def median_srcc(X, frame, cfg, splits=None) -> tuple[float, list[float]]:
    run = run_splits(X, frame, n_splits=cfg["n_splits"], test_frac=cfg["test_frac"], val_frac=cfg["val_frac"],
                     seed=cfg["seed"], alphas=cfg["alphas"], standardize=cfg["standardize"],
                     alpha_rule=cfg["alpha_rule"], splits=splits)
    srcc = score_run(run, logistic="none")["srcc"]
    return float(srcc.median()), [round(float(s), 4) for s in srcc]


def measure(dataset: str, cfg: dict) -> dict:
    frame = manifest.read(Path("data/prepared") / dataset / "manifest.csv")
    path = Path("data/features") / f"{dataset}.npz"
    stored = features.load_for(path, frame)
    photo = photo_of(frame["content_id"], f"data/prepared/{dataset}/manifest.csv")
    photos = sorted(set(photo))
    by_photo = [Split(train=np.flatnonzero(photo != p), val=np.zeros(0, dtype=int), test=np.flatnonzero(photo == p),
                      seed=None) for p in photos]
    identity = pd.get_dummies(photo).to_numpy(dtype=np.float64)
    rows = {}
    for model in [m for m in cfg["models"] if m in stored]:
        protocol, _ = median_srcc(stored[model], frame, cfg)
        lopo, per_photo = median_srcc(stored[model], frame, {**cfg, "alphas": cfg["alphas"][:1]}, by_photo)
        rows[model] = {"protocol": round(protocol, 4), "by_photo": round(lopo, 4),
                       "by_photo_each": dict(zip(photos, per_photo))}
    only, _ = median_srcc(identity, frame, {**cfg, "alphas": cfg["alphas"][:1]})
    return {"photos": photos, "n_images": len(frame), "n_contents": int(frame["content_id"].nunique()),
            "features_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "photo_only": round(only, 4), "rows": rows}


def markdown(result: dict) -> str:
    lines = ["# The embedded sets: SRCC on the protocol's splits against splits by photograph", "",
             stamp_line(result["provenance"]), "",
             "`protocol`: median SRCC over the protocol's content-disjoint splits (the headline; content = a 128 px "
             "tile). `by photo`: leave one photograph out, median over the folds. `photo only`: a ridge on the "
             "one-hot photograph, on the protocol's splits. SRCC before any logistic; see the script's docstring.", ""]
    for dataset, res in result["datasets"].items():
        lines += [f"## {dataset}", "",
                  f"{res['n_images']} images, {res['n_contents']} tiles of {len(res['photos'])} photographs "
                  f"({', '.join(res['photos'])}); photo only: **{res['photo_only']:.3f}**.", "",
                  "| row | protocol | by photo | " + " | ".join(res["photos"]) + " |",
                  "|---|---|---|" + "---|" * len(res["photos"])]
        for model, r in res["rows"].items():
            each = " | ".join(f"{r['by_photo_each'][p]:.3f}" for p in res["photos"])
            lines.append(f"| {model} | {r['protocol']:.3f} | {r['by_photo']:.3f} | {each} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic-single", "synthetic-mixed"])
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/photo_disjoint"))
    args = parser.parse_args()
    cfg = params.section("evaluate")
    result = {"provenance": stamp(), "dvc_lock_sha256": hashlib.sha256(Path("dvc.lock").read_bytes()).hexdigest(),
              "evaluate": {k: cfg[k] for k in ("n_splits", "test_frac", "val_frac", "seed", "alphas", "standardize")},
              "datasets": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for dataset in args.datasets:
            result["datasets"][dataset] = measure(dataset, cfg)
    io.write_json(args.out.with_suffix(".json"), result)
    io.write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
