"""Stage `extract`: frozen features of one dataset for every model in the study.

    python stages/extract.py DATASET --prepared data/prepared/DATASET --out data/features/DATASET.npz

It reads PREPARED/manifest.csv and writes one array per model to OUT. The rows' own files (data/encoders,
data/models/niqe_mvg.npz) are where the row registry, iqabench.rows, reads them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from iqabench import features, manifest, params, rows, runtime, stage_errors, stage_paths, timing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="extract@DATASET extracts features of one name of params.yaml datasets:; "
                        "`dvc repro extract` runs it for each")
    stage_paths.option(parser, "--prepared", "DIR", "prepare@DATASET's output: DIR/manifest.csv")
    stage_paths.option(parser, "--out", "NPZ", "written: the features file")
    args = parser.parse_args(argv)
    name = args.dataset
    cfg = params.section("extract")
    with stage_errors.one_line(f"extract@{name}"):  # a bad manifest cell: one line
        frame = manifest.read(args.prepared / "manifest.csv")
    device = runtime.setup(cfg["device"]).device
    with timing.timed(f"extract-{name}"):
        arrays = {}
        for model in cfg["models"]:
            try:
                arrays[model] = features.extract(rows.feature_fn(model, cfg["seed"], device), frame,
                                                 batch_size=cfg["batch_size"], device=device, bf16=cfg["bf16"],
                                                 max_short_side=cfg["max_short_side"],
                                                 description=f"{model} on {name}")
            except features.MissingReferenceError as exc:
                # A full-reference row has no value on authentic images: its cells stay empty, the rest runs.
                print(f"{name}: no {model} row ({exc})")
                continue
            except (ValueError, FileNotFoundError) as exc:  # an unreadable or absent image or model file: named
                raise SystemExit(f"error: extract@{name}, model {model}: {exc}") from None
            undefined = features.undefined_images(arrays[model])
            if undefined.any():
                # The NaN rows stay in the features file (the record of which images); evaluate drops and counts them.
                listed = frame["image"][undefined].map(lambda p: Path(p).name).tolist()
                print(f"{name}: {model} is undefined on {len(listed)} image(s), kept as NaN and counted as missing "
                      f"by evaluate: {', '.join(listed[:10])}{' ...' if len(listed) > 10 else ''}")
        features.save_file(args.out, features.image_names(frame), arrays)
    print(f"{name}: features {', '.join(f'{m} {a.shape}' for m, a in arrays.items())}")


if __name__ == "__main__":
    main()
