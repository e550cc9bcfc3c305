"""Stage `synthesize`: the pretraining corpus of distorted crops, and the distortion gallery.

    python stages/synthesize.py --corpus data/corpus --gallery reports/distortions.png
        ->  CORPUS/shard-*.pt, CORPUS/labels.csv, the gallery PNG

Shards are persistent (DVC `persist: true`): an interrupted run keeps the
finished shards whose config matches and generates only the rest.
"""
from __future__ import annotations

import argparse

from iqabench import images, io, params, stage_paths, timing
from iqabench.datasets.embedded import PHOTOS
from iqabench.distortions import save_gallery
from iqabench.training import corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.option(parser, "--corpus", "DIR", "written: the shards and labels.csv (kept across runs)")
    stage_paths.option(parser, "--gallery", "PNG", "written: one photo under every distortion")
    args = parser.parse_args(argv)
    cfg = params.section("synthesize")
    with timing.timed("synthesize"):
        labels = corpus.build(args.corpus, photos=cfg["photos"], crop=cfg["crop"], n_images=cfg["n_images"],
                              shard_size=cfg["shard_size"], seed=cfg["seed"])
        io.write_csv(args.corpus / "labels.csv", labels)
        photo = images.from_uint8(PHOTOS[cfg["gallery_photo"]]())
        save_gallery(photo, args.gallery)
    print(f"corpus: {len(labels)} crops in {labels['shard'].nunique()} shards, "
          f"{labels['class'].nunique()} distortion classes -> {args.corpus}")


if __name__ == "__main__":
    main()
