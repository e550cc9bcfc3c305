"""From a dataset folder on disk to one validated manifest frame."""
from __future__ import annotations

import hashlib
import os
import shlex
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io, manifest
from .archives import ARCHIVE_DIR
from .registry import DatasetSpec, get_spec
from .scorefiles import DatasetError, locate


def build_manifest(name: str, root: Path) -> pd.DataFrame:
    """Parse the dataset ``name`` laid out as published under ``root`` into a manifest frame.

    Scores are normalised to [0, 1] (higher is better) from the spec's scale and the
    published value is kept in ``raw_score``. Every listed image must exist.
    """
    spec = get_spec(name)
    return build_from_spec(spec, Path(root))


def build_from_spec(spec: DatasetSpec, root: Path) -> pd.DataFrame:
    if spec.parser is None:
        raise DatasetError(f"{spec.name} has no quality scores ({spec.kind}); use list_images() "
                           f"to read it as an unlabelled pretraining source")
    refuse_a_file(spec.name, root)
    if not root.is_dir():
        raise DatasetError(f"{spec.name}: {root} is not a folder; download it with "
                           f"`iqabench datasets download {spec.name}` or register a copy with "
                           f"`iqabench datasets add {spec.name} --from PATH`")
    parsed = spec.parser(spec, root)
    check_inside(spec.name, parsed, root)
    check_images_exist(spec.name, parsed["image"].tolist())
    warn_missing_references(spec.name, parsed["reference"].tolist(), root)
    warn_out_of_range(spec.name, parsed["raw_score"].to_numpy(), spec.lo, spec.hi, spec.scale)
    frame = manifest.make(
        spec.name, parsed["image"], parsed["raw_score"], score_type=spec.score_type, lo=spec.lo, hi=spec.hi,
        higher_is_better=spec.higher_is_better,
        score_source=parsed.attrs.get("score_source", spec.score_source),  # a parser may name another file read
        content_id=parsed["content_id"].tolist(), reference=parsed["reference"].tolist(),
        distortion=parsed["distortion"].tolist(), level=parsed["level"].tolist(),
        split=parsed["split"].tolist())
    return join_identical_copies(spec.name, manifest.validate(frame, where=f"{spec.name} manifest from {root}"))


def refuse_a_file(dataset: str, root: Path) -> None:
    """A dataset is a folder: given a file in it (the score file, say), name the folder that holds it."""
    if Path(root).is_file():
        raise DatasetError(f"{dataset}: {root} is a file, not the dataset's folder; give the folder that holds it: "
                           f"`iqabench datasets add {dataset} --from {shlex.quote(str(Path(root).parent))}`")


def join_identical_copies(dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical image files under different names (a copied photo) are one content: the contents they
    belong to are joined, so content-disjoint splits keep every copy on one side (a twin in train and test
    took SRCC to 0.96). Files are compared by size, then by their first 64 KiB, and only then hashed whole
    (a set of same-sized BMPs, TID2013's or PIPAL's, is not read twice over)."""
    images = frame["image"]
    alike = images[images.map(os.path.getsize).duplicated(keep=False)]
    if not alike.empty:
        alike = alike[alike.map(_head).duplicated(keep=False)]
    if alike.empty:
        return frame
    groups = alike.groupby(alike.map(io.sha256_file).to_numpy()).groups
    join = {}  # content id -> the id it joins (a tiny union-find over the copies' contents)

    def root(c):
        while join.get(c, c) != c:
            c = join[c]
        return c
    copies = []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        ids = [root(frame.at[i, "content_id"]) for i in rows]
        if len(set(ids)) < 2:  # copies within one content (LIVE's references among its distorted images)
            continue
        for other in ids[1:]:
            join[other] = ids[0]
        copies.append(" = ".join(Path(frame.at[i, "image"]).name for i in rows[:3]))
    if not copies:
        return frame
    frame = frame.copy()
    frame["content_id"] = frame["content_id"].map(root)
    warnings.warn(f"{dataset}: {len(copies)} image file(s) have byte-identical copies under another name "
                  f"({'; '.join(copies[:3])}{' ...' if len(copies) > 3 else ''}); their contents are joined, so "
                  f"every split keeps the copies on one side ({frame['content_id'].nunique()} contents)",
                  stacklevel=2)
    return frame


def _head(path: str, size: int = 1 << 16) -> tuple[int, bytes]:
    """The file's size and the digest of its first ``size`` bytes (kept small: tens of thousands are held)."""
    with open(path, "rb") as fh:
        return os.path.getsize(path), hashlib.sha256(fh.read(size)).digest()


def check_inside(dataset: str, parsed: pd.DataFrame, root: Path) -> None:
    """Every image and reference a parser built as ``folder / name`` from a score file stays inside ``root``.

    A name that is absolute or climbs out with '..' would register files nobody chose to include (as
    add-generic's ``--folder`` check refuses). Checked on the spelled path, not through links: a dataset
    folder may link to where its images are stored. A NUL byte is refused here too: the OS calls that
    follow would raise on it (names read from .mat or text files never passed ``name_column``)."""
    base = Path(os.path.normpath(root))
    source = parsed.attrs.get("source", f"the score file under {root}")
    for column, what in (("image", "image"), ("reference", "reference image")):
        for listed in parsed[column]:
            if not listed:  # sets without references
                continue
            if "\0" in listed:
                raise DatasetError(f"{dataset}: {source} lists {what} {listed!r}, which holds a NUL byte (\\x00) "
                                   "that no file name can; use the score file as published")
            path = Path(listed)
            if not Path(os.path.normpath(path)).is_relative_to(base):
                shown = path.relative_to(root) if path.is_relative_to(root) else path  # the name as listed
                raise DatasetError(f"{dataset}: {source} lists {what} '{shown}', which is outside the dataset "
                                   f"folder {root}; names in a score file must be relative paths inside it "
                                   "(use the score file as published)")


def is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError as err:  # a name over the file system's limit (ENAMETOOLONG) raises instead of answering
        raise DatasetError(f"{io.shown_path(path)}: {err.strerror or err}; no file can have this name: fix the "
                           "score file's row") from None


def check_images_exist(dataset: str, images: list[str]) -> None:
    missing = [p for p in images if not is_file(p)]
    if missing:
        listings: dict[Path, dict[str, str]] = {}
        shown = io.listed(why_missing(p, listings) for p in missing)
        folders = " or are folders" if any(Path(p).is_dir() for p in missing) else ""
        raise DatasetError(f"{dataset}: {len(missing)} of {len(images)} listed image(s) are missing{folders}:\n  "
                           f"{shown}\nRe-download or re-extract the dataset so that every image "
                           f"in its score file is present")


def warn_missing_references(dataset: str, references: list[str], root: Path) -> None:
    """Some public copies ship the distorted images only: such a copy still serves every no-reference row, so
    missing references only warn, naming them and where they go, before `extract` would stop on the first."""
    listed = list(dict.fromkeys(r for r in references if r))  # authentic sets have none
    missing = [r for r in listed if not is_file(r)]
    if not missing:
        return
    shown = ", ".join(io.shown_path(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
    folders = []
    for parent in dict.fromkeys(Path(p).parent for p in missing):
        inside = parent.is_relative_to(root) and parent != root
        folders.append(f"{parent.relative_to(root).as_posix()}/" if inside else str(parent))
    warnings.warn(f"{dataset}: {len(missing)} of {len(listed)} reference image(s) are missing ({shown}); the "
                  f"full-reference rows (fr:*) cannot be computed on this copy: add them ({', '.join(folders)})",
                  stacklevel=3)


def why_missing(image: str, listings: dict) -> str:
    """A missing image, with what is there instead when that explains it: a folder of that name, or a file
    whose name differs only in Unicode normalisation ('é' as one code point or as 'e' and an accent, as
    macOS and archive tools may store it), which looks the same in every listing but does not match."""
    path = Path(image)
    if path.is_dir():
        return f"{image} (a folder, not an image file; list the image files in it instead)"
    if path.parent not in listings:  # one listing per folder: only the shown images are explained
        listings[path.parent] = ({unicodedata.normalize("NFC", p.name): p.name for p in path.parent.iterdir()}
                                 if path.parent.is_dir() else {})
    found = listings[path.parent].get(unicodedata.normalize("NFC", path.name))
    if found is not None and found != path.name:
        form = next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, found)), "a mixed form")
        return (f"{image} (the folder holds the same name in another Unicode normalisation, {form}: {ascii(found)}, "
                f"where the score file has {ascii(path.name)}; rename the file or the entry so both are spelled "
                "alike)")
    return image


def check_scores_vary(dataset: str, raw: np.ndarray, source) -> None:
    """A dataset whose scores are all equal ranks nothing: SRCC and PLCC are undefined on it, and a regressor
    fitted on it predicts one value. Checked for the user's own score files (published ones vary)."""
    if raw.size and np.unique(raw).size < 2:  # no rows at all: manifest.validate says so
        raise DatasetError(f"{dataset}: all {raw.size} score(s) in {source} are {raw[0]:g}; a quality dataset needs "
                           "images with different scores (check the score column)")


def warn_out_of_range(dataset: str, raw: np.ndarray, lo: float, hi: float, scale: str) -> None:
    """Scores outside the declared scale leave [0, 1] after normalising; say so, do not clip."""
    outside = (raw < lo) | (raw > hi)
    if outside.any():
        warnings.warn(f"{dataset}: {int(outside.sum())} raw score(s) fall outside the declared scale {scale} "
                      f"(min {raw.min():g}, max {raw.max():g}); their normalised score leaves [0, 1]",
                      stacklevel=3)


def list_images(name: str, root: Path) -> list[Path]:
    """The images of a dataset folder, sorted; for unlabelled pretraining sources like KADIS-700k."""
    spec = get_spec(name)
    refuse_a_file(spec.name, root)
    folder = locate(Path(root), spec.images_dir, spec.name) if spec.images_dir else Path(root)
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in spec.image_suffixes
                    and ARCHIVE_DIR not in p.relative_to(folder).parts)  # a download's own files, not the set's
    if not images:
        raise DatasetError(f"{spec.name}: no images ({', '.join(spec.image_suffixes)}) under {folder}")
    return images
