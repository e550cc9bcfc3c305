"""Stage `synthesize`: the pretraining corpus of distorted crops, and the distortion gallery.

    python stages/synthesize.py  ->  data/corpus/shard-*.pt, data/corpus/labels.csv, reports/distortions.png

Shards are persistent (DVC `persist: true`): an interrupted run keeps the
finished shards whose config matches and generates only the rest.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from iqabench import images, io, params, timing
from iqabench.datasets.embedded import PHOTOS
from iqabench.distortions import save_gallery
from iqabench.training import corpus

OUT = Path("data/corpus")


def main() -> None:
    cfg = params.section("synthesize")
    with timing.timed("synthesize"):
        labels = corpus.build(OUT, photos=cfg["photos"], crop=cfg["crop"], n_images=cfg["n_images"],
                              shard_size=cfg["shard_size"], seed=cfg["seed"])
        io.write_csv(OUT / "labels.csv", labels)
        photo = images.from_uint8(PHOTOS[cfg["gallery_photo"]]())
        save_gallery(photo, Path("reports/distortions.png"))
    print(f"corpus: {len(labels)} crops in {labels['shard'].nunique()} shards, "
          f"{labels['class'].nunique()} distortion classes -> {OUT}")


if __name__ == "__main__":
    # No arguments (it reads params.yaml): --help shows the docstring, a stray one is refused, not ignored.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
