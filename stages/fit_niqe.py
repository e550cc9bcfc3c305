"""Stage `fit_niqe`: the NIQE pristine model, fitted once for every dataset's `niqe` row.

    python stages/fit_niqe.py --out data/models/niqe_mvg.npz

(the file the `niqe` row reads: iqabench.baselines.NIQE_MODEL).

Pristine photos: KADIS-700k when data/raw/kadis700k exists, else the embedded
scikit-image photographs (the sources of the synthetic sets; see
iqabench.baselines). Settings come from params.yaml's optional `niqe` section
(patch_size, sharpness_threshold, kadis_sample); absent keys take the published
values (iqabench.params_schema's defaults, which params.section fills).
"""
from __future__ import annotations

import argparse
from iqabench import baselines, params, stage_paths, timing
from iqabench.datasets import DatasetError
from iqabench.images import ImageError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.option(parser, "--out", "NPZ", "written: the pristine model")
    out = parser.parse_args(argv).out
    cfg = params.section("niqe", optional=True)
    source = baselines.pristine_source()
    try:
        with timing.timed("fit_niqe"):
            model = baselines.fit_pristine_niqe(kadis_sample=cfg["kadis_sample"], patch_size=cfg["patch_size"],
                                                sharpness_threshold=cfg["sharpness_threshold"])
            model.save(out)
    except (DatasetError, ImageError) as err:  # a broken KADIS-700k copy: name it, no traceback
        raise SystemExit(f"fit_niqe: the pristine photos from {source} cannot be used: {err}") from None
    print(f"NIQE pristine model from {source}: {model.num_patches} patches of {model.patch_size} px -> {out}")


if __name__ == "__main__":
    main()
