"""One manifest schema for every dataset, embedded, shared or downloaded.

A manifest is a CSV with one row per rated image. ``score`` is always "higher is
better" and normalised to [0, 1] from the dataset's declared scale, so that
scatter plots and pooled training compare like with like; ``raw_score`` keeps
the published value and ``raw_scale`` says what it was.

Image and reference paths are stored relative to the manifest's own folder (or
absolute for copies registered elsewhere), so a manifest that DVC caches does
not bake in one machine's layout.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import io

COLUMNS = [
    "dataset",        # registry name, e.g. "koniq10k" or "synthetic-single"
    "image",          # path of the rated image
    "score",          # higher is better, normalised to [0, 1] from raw_scale
    "raw_score",      # the value as published (MOS, DMOS or pseudo-MOS)
    "raw_scale",      # e.g. "MOS [1, 5], higher is better"
    "content_id",     # reference image / scene id: splits never share one
    "reference",      # pristine reference path, empty for authentic sets
    "distortion",     # type name(s), "+"-joined for compositions; empty if unknown
    "level",          # level(s) 1..5, "+"-joined like distortion; empty if unknown
    "split",          # official split (train / val / test) or empty
    "score_source",   # who produced the score: human ratings or pseudo-labels
]
SPLITS = {"", "train", "val", "test"}


class ManifestError(ValueError):
    """A manifest that breaks the schema; the message names file, row and field."""


def scale_label(score_type: str, lo: float, hi: float, higher_is_better: bool) -> str:
    return f"{score_type} [{lo:g}, {hi:g}], {'higher' if higher_is_better else 'lower'} is better"


def normalise(raw, lo: float, hi: float, higher_is_better: bool) -> np.ndarray:
    """Map raw scores on [lo, hi] to [0, 1] with higher = better quality."""
    if not hi > lo:
        raise ManifestError(f"score scale must have hi > lo, got [{lo}, {hi}]")
    unit = (np.asarray(raw, dtype=np.float64) - lo) / (hi - lo)
    return unit if higher_is_better else 1.0 - unit


def own_contents(images) -> list[str]:
    """Each image its own content (an authentic set, a user's set without --content-col): its file stem, or
    where two images share a stem (``s1/photo.png``, ``s2/photo.png``), their paths, which were one content."""
    stems = [Path(p).stem for p in images]
    counts = pd.Series(stems).value_counts()
    return [stem if counts[stem] == 1 else os.fspath(p) for stem, p in zip(stems, images)]


def check_resolution(dataset: str, raw, score, lo: float, hi: float) -> None:
    """Scores stay apart once normalised and written at ``io.SIGNIFICANT_DIGITS``: a scale declared far wider
    than the scores (``--lo -1e12 --hi 1e12`` for scores 0-1900) merged them into ties, ranked silently."""
    raw = np.asarray(raw, dtype=np.float64)
    written = np.array([io.stable_float(v) for v in np.asarray(score, dtype=np.float64)])
    distinct, kept = np.unique(raw[np.isfinite(raw)]).size, np.unique(written[np.isfinite(written)]).size
    if kept < distinct:
        raise ManifestError(f"{dataset}: the declared scale [{lo:g}, {hi:g}] is so much wider than the scores "
                            f"(min {np.nanmin(raw):g}, max {np.nanmax(raw):g}) that normalised to [0, 1] and written "
                            f"at {io.SIGNIFICANT_DIGITS} significant digits, {distinct} distinct scores become "
                            f"{kept}; give the scale the scores are on (--lo/--hi)")


def make(dataset: str, images, raw, *, score_type: str, lo: float, hi: float,
         higher_is_better: bool, score_source: str, content_id=None, reference="",
         distortion="", level="", split="") -> pd.DataFrame:
    """Build a manifest frame from columns; scalars broadcast to every row."""
    images = [os.fspath(p) for p in images]
    score = normalise(raw, lo, hi, higher_is_better)
    check_resolution(dataset, raw, score, lo, hi)
    frame = pd.DataFrame({
        "dataset": dataset,
        "image": images,
        "score": score,
        "raw_score": np.asarray(raw, dtype=np.float64),
        "raw_scale": scale_label(score_type, lo, hi, higher_is_better),
        "content_id": own_contents(images) if content_id is None else content_id,
        "reference": reference,
        "distortion": distortion,
        "level": level,
        "split": split,
        "score_source": score_source,
    })
    return frame[COLUMNS]


def validate(frame: pd.DataFrame, where: str = "manifest") -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{where}: missing column(s) {missing}; a manifest needs {COLUMNS}")
    if frame.empty:
        raise ManifestError(f"{where}: no rows; the dataset produced no rated images")
    # Extra columns (e.g. per-metric full-reference values) travel after the schema's own.
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]].copy()
    for col in ("dataset", "image", "content_id", "score_source", "raw_scale"):
        blank = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if blank.any():
            raise ManifestError(f"{where}: empty '{col}' in row {int(np.flatnonzero(blank)[0]) + 2}")
    for col in ("score", "raw_score"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ManifestError(f"{where}: '{col}' is not a finite number in row {row + 2} "
                                f"(image {frame['image'].iloc[row]!r}, value {frame[col].iloc[row]!r})")
        frame[col] = values.astype(np.float64)
    for col in ("reference", "distortion", "level", "split"):
        frame[col] = frame[col].fillna("").astype(str)
    for col in ("dataset", "image", "content_id", "score_source", "raw_scale", "reference", "distortion", "level"):
        nul = frame[col].astype(str).str.contains("\x00", regex=False)  # no path or name holds one; os calls fail
        if nul.any():
            row = int(np.flatnonzero(nul)[0])
            raise ManifestError(f"{where}: '{col}' holds a NUL character in row {row + 2} "
                                f"({frame[col].iloc[row]!r}); rebuild the manifest (`dvc repro prepare`)")
    frame["content_id"] = frame["content_id"].astype(str)
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        value = frame["split"][bad_split].iloc[0]
        raise ManifestError(f"{where}: unknown split {value!r}; use one of {sorted(SPLITS)}")
    dup = frame["image"].duplicated()
    if dup.any():
        raise ManifestError(f"{where}: image {frame['image'][dup].iloc[0]!r} is listed twice")
    return frame


def write(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write atomically, storing paths relative to the manifest's folder."""
    path = Path(path)
    frame = validate(frame, where=str(path))
    base = path.parent.resolve()
    for col in ("image", "reference"):
        frame[col] = [_relative(p, base) for p in frame[col]]
    return io.write_csv(path, frame)


def read(path: str | os.PathLike, resolve: bool = True) -> pd.DataFrame:
    """Read and validate a manifest; with ``resolve`` the paths become absolute."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist; run `dvc repro prepare` to build it")
    try:
        frame = pd.read_csv(path, dtype={"content_id": str, "level": str, "split": str}, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:  # e.g. an empty file
        reason = " ".join(str(exc).split())  # one line
        raise ManifestError(f"{path}: not a readable CSV file ({type(exc).__name__}: {reason})") from None
    frame = validate(frame, where=str(path))
    if resolve:
        base = path.parent.resolve()
        for col in ("image", "reference"):
            frame[col] = [str((base / p).resolve()) if p else "" for p in frame[col]]
    return frame


def _relative(p: str, base: Path) -> str:
    if not p:
        return ""
    return os.path.relpath(Path(p).resolve(), base)
