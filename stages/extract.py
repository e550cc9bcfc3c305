"""Stage `extract`: frozen features of one dataset for every model in the study.

    python stages/extract.py DATASET   ->  data/features/DATASET.npz (one array per model)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from iqabench import features, manifest, params, rows, runtime, stage_errors, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="extract@DATASET extracts features of one name of params.yaml datasets:; "
                        "`dvc repro extract` runs it for each")
    name = parser.parse_args().dataset
    cfg = params.section("extract")
    with stage_errors.one_line(f"extract@{name}"):  # a bad manifest cell: one line
        frame = manifest.read(Path("data/prepared") / name / "manifest.csv")
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
            undefined = features.undefined_rows(arrays[model])
            if undefined.any():
                # The NaN rows stay in the features file (the record of which images); evaluate drops and counts them.
                listed = frame["image"][undefined].map(lambda p: Path(p).name).tolist()
                print(f"{name}: {model} is undefined on {len(listed)} image(s), kept as NaN and counted as missing "
                      f"by evaluate: {', '.join(listed[:10])}{' ...' if len(listed) > 10 else ''}")
        features.save_file(Path("data/features") / f"{name}.npz", features.image_names(frame), arrays)
    print(f"{name}: features {', '.join(f'{m} {a.shape}' for m, a in arrays.items())}")


if __name__ == "__main__":
    main()
