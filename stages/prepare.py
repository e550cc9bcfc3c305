"""Stage `prepare`: build one dataset's manifest (and, for embedded sets, its images).

    python stages/prepare.py DATASET --out data/prepared/DATASET   ->  OUT/manifest.csv

Embedded sets are generated from scikit-image's photographs; `*-subset` names
read the real human-rated subsets in ../shared/datasets; any other name is a
registry dataset, downloaded (`data/raw/NAME`) or registered with
`iqabench datasets add NAME --from PATH`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from iqabench import manifest, params, stage_paths, timing
from iqabench.datasets import DatasetError, build_manifest, embedded, fingerprint
from iqabench.datasets.local import registered_manifest
from iqabench.manifest import ManifestError
from iqabench.datasets.registry import SHARED_SUBSETS

# In --out while the stage writes it, removed once manifest.csv is written: an interrupted run's partial output
# (images, no manifest) is then still known as prepare's own, and the same command run again empties it.
INCOMPLETE = ".prepare-incomplete"


def prepare(name: str, out_dir: Path, cfg: dict):
    if embedded.is_embedded(name):
        return embedded.build(name, out_dir, patch_size=cfg["patch_size"],
                              max_patches_per_photo=cfg["max_patches_per_photo"],
                              versions_per_patch=cfg["versions_per_patch"], max_k=cfg["max_k"],
                              label_metrics=cfg["label_metrics"], seed=cfg["seed"],
                              deepwsd_weights=cfg.get("deepwsd_weights"))
    source, root, _ = fingerprint.locate(name, cfg["shared_root"])  # what data/fingerprints/NAME.json covers
    if source == "shared":
        if not root.is_dir():
            raise DatasetError(f"dataset {name!r} needs {root} (the shared subsets); remove it from "
                               "`datasets` in params.yaml on machines without ../shared")
        frame = build_manifest(SHARED_SUBSETS[name], root)
        frame["dataset"] = name
        return frame
    if source == "download":
        return build_manifest(name, root)
    return registered_manifest(name)  # registered, or missing: its error says how to get the data


def _not_a_prepare_output(out_dir: Path) -> str | None:
    """Why the stage must not empty ``out_dir`` (it is not a previous output of prepare), or None: it may."""
    if not os.path.lexists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        return "is a file" if os.path.isfile(out_dir) else "is not a folder"
    if _is_manifest(out_dir / "manifest.csv") or os.path.isfile(out_dir / INCOMPLETE):
        return None
    try:
        return "holds files but no manifest.csv written by prepare" if any(out_dir.iterdir()) else None
    except OSError as err:
        return f"cannot be listed ({err.strerror})"


def _is_manifest(path: Path) -> bool:
    """Whether ``path`` starts with a manifest's header (a user's own `manifest.csv` of scores does not)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().rstrip("\r\n").split(",")[:len(manifest.COLUMNS)] == manifest.COLUMNS
    except OSError:
        return False


def _empty(out_dir: Path) -> None:
    """Empty ``out_dir`` (never mix files of two parameter sets), marked as prepare's own first: a run killed
    while emptying or writing leaves a folder the guard accepts, whatever was deleted before the kill."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE).touch()
    for child in out_dir.iterdir():
        if child.name != INCOMPLETE:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="prepare@DATASET builds one name of params.yaml datasets:; "
                        "`dvc repro prepare` runs it for each")
    stage_paths.option(parser, "--out", "DIR", "written (emptied first): manifest.csv, and images for embedded sets")
    args = parser.parse_args(argv)
    name, out_dir = args.dataset, args.out
    if Path.cwd().resolve().is_relative_to(out_dir.resolve()):  # `--out .`: rmtree below would empty the repository
        parser.error(f"--out {out_dir} holds the working folder, which the stage empties first")
    not_ours = _not_a_prepare_output(out_dir)  # `--out data` emptied the downloads, encoders and registry
    if not_ours:
        parser.error(f"--out {out_dir} {not_ours}, so it is not a prepare output, and the stage empties --out "
                     "first: give the dataset's own folder, new or a previous output, as dvc.yaml's cmd does "
                     "(--help shows it)")
    cfg = params.section("prepare")
    try:
        with timing.timed(f"prepare-{name}"):
            # Only an embedded set writes into out_dir; any other is read first, so that a misspelt or unreadable
            # dataset stops here with the previous output still in place (its frame does not depend on out_dir).
            frame = None if embedded.is_embedded(name) else prepare(name, out_dir, cfg)
            _empty(out_dir)
            if frame is None:
                frame = prepare(name, out_dir, cfg)
            manifest.write(frame, out_dir / "manifest.csv")
            (out_dir / INCOMPLETE).unlink()  # never in a finished output: DVC hashes the folder
    except (DatasetError, ManifestError) as err:  # the user's data or registry: one line, no traceback
        print(f"prepare {name}: {err}", file=sys.stderr)
        return 1
    print(f"{name}: {len(frame)} images, {frame['content_id'].nunique()} contents -> {out_dir / 'manifest.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
