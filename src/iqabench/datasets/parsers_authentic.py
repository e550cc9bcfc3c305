"""Parsers for authentically distorted and AI-generated sets (one image per content).

Each parser reads the score file exactly as its authors publish it and returns
a frame with columns ``image`` (absolute path), ``raw_score``, ``content_id``,
``reference``, ``distortion``, ``level``, ``split``; ``build_manifest`` does the
rest (normalising, existence checks, validation).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import manifest
from .scorefiles import (DatasetError, bad_line, load_mat, locate, mat_strings, mat_vector, name_column, numeric_column,
                         read_csv_columns, read_excel_columns, read_excel_positional, text_column)

# KonIQ's metadata spells the splits out; the manifest uses the short names.
KONIQ_SPLITS = {"training": "train", "validation": "val", "test": "test"}


def frame(images, raw, *, source: Path, content_id=None, reference="", distortion="", level="",
          split="") -> pd.DataFrame:
    """The parser's rows; ``source`` (the score file, or folder of them, the names came from) is kept in
    ``attrs`` so that ``build_from_spec`` can name it when a listed path leaves the dataset folder."""
    images = [str(p) for p in images]
    table = pd.DataFrame({
        "image": images,
        "raw_score": np.asarray(raw, dtype=np.float64),
        "content_id": manifest.own_contents(images) if content_id is None else content_id,
        "reference": reference, "distortion": distortion, "level": level, "split": split,
    })
    table.attrs["source"] = str(source)
    return table


def image_folder(base: Path, spec, first: str) -> Path:
    """Where a set's images are when public copies put them in differently named folders:
    ``spec.images_dir`` under ``base`` (or one folder down), else ``base`` itself or a folder
    beside the score file that holds the first listed image; else the published folder, so
    that the missing-images error names the path the dataset documents."""
    found = locate(base, spec.images_dir, spec.name, required=False)
    if found is not None:
        return found
    beside = [base] + sorted(p for p in base.iterdir() if p.is_dir())
    return next((d for d in beside if (d / first).is_file()), base / spec.images_dir)


def parse_koniq(spec, root: Path) -> pd.DataFrame:
    """KonIQ-10k: ``koniq10k_distributions_sets.csv`` (MOS on 0-100, official split).

    The other official file, ``koniq10k_scores_and_distributions.csv``, has
    ``MOS`` on the 1-5 rating scale and ``MOS_zscore`` on 0-100; the latter is
    the value the sets file calls ``MOS``, so it is what is read from that file
    (no split there). The 1-5 ``MOS`` is never mistaken for the 0-100 one.
    """
    sets_file = locate(root, "koniq10k_distributions_sets.csv", spec.name, required=False)
    if sets_file is not None:
        table = read_csv_columns(sets_file, spec.name, ["image_name", "MOS", "set"])
        names = name_column(table, "image_name", sets_file, spec.name)
        raw = numeric_column(table, "MOS", sets_file, spec.name)
        sets = text_column(table, "set", sets_file, spec.name)
        unknown = ~sets.isin(list(KONIQ_SPLITS))
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise bad_line(table, row, sets_file, spec.name, f"unknown set {sets.iloc[row]!r}",
                           remedy=f"expected one of {sorted(KONIQ_SPLITS)}")
        split = sets.map(KONIQ_SPLITS).tolist()
        score_dir, source = sets_file.parent, sets_file
    else:
        scores_file = locate(root, "koniq10k_scores_and_distributions.csv", spec.name, required=False)
        if scores_file is None:
            raise DatasetError(f"{spec.name}: neither koniq10k_distributions_sets.csv nor "
                               f"koniq10k_scores_and_distributions.csv under {root}; download the "
                               f"metadata from {spec.homepage}")
        table = read_csv_columns(scores_file, spec.name, ["image_name", "MOS", "MOS_zscore"])
        names = name_column(table, "image_name", scores_file, spec.name)
        raw = numeric_column(table, "MOS_zscore", scores_file, spec.name)
        split = ""
        score_dir, source = scores_file.parent, scores_file
    images_dir = locate(score_dir, spec.images_dir, spec.name, required=False) or locate(root, spec.images_dir, spec.name)
    return frame([images_dir / n for n in names], raw, source=source, split=split)


def parse_spaq(spec, root: Path) -> pd.DataFrame:
    """SPAQ: ``Annotations/MOS and Image attribute scores.xlsx`` or a ``mos.csv`` with the same columns."""
    xlsx = locate(root, "Annotations/MOS and Image attribute scores.xlsx", spec.name, required=False)
    if xlsx is not None:
        table = read_excel_columns(xlsx, spec.name, ["Image name", "MOS"])
        source, base = xlsx, xlsx.parent.parent
    else:
        source = locate(root, "mos.csv", spec.name, required=False)
        if source is None:
            raise DatasetError(f"{spec.name}: neither 'Annotations/MOS and Image attribute scores.xlsx' nor "
                               f"'mos.csv' under {root}")
        table = read_csv_columns(source, spec.name, ["Image name", "MOS"])
        base = source.parent
    names = name_column(table, "Image name", source, spec.name)
    raw = numeric_column(table, "MOS", source, spec.name)
    images_dir = locate(base, spec.images_dir, spec.name)
    return frame([images_dir / n for n in names], raw, source=source)


def parse_clive(spec, root: Path) -> pd.DataFrame:
    """LIVE In the Wild: names and MOS in two .mat files; the first 7 entries
    (``t1.bmp`` .. ``t7.bmp``) are the practice images shown to raters
    (``Images/trainingImages``) and are dropped, leaving 1162 rated images."""
    names_file = locate(root, "Data/AllImages_release.mat", spec.name)
    mos_file = locate(root, "Data/AllMOS_release.mat", spec.name)
    names = mat_strings(load_mat(names_file, spec.name, ["AllImages_release"])["AllImages_release"])
    mos = mat_vector(load_mat(mos_file, spec.name, ["AllMOS_release"]), "AllMOS_release", mos_file, spec.name)
    if len(names) != len(mos):
        raise DatasetError(f"{spec.name}: {names_file.name} lists {len(names)} images but "
                           f"{mos_file.name} has {len(mos)} scores")
    if len(names) <= 7:
        raise DatasetError(f"{spec.name}: {names_file} lists only {len(names)} images; the release has 1169")
    practice = [f"t{i}.bmp" for i in range(1, 8)]
    if [n.replace("\\", "/").rsplit("/", 1)[-1].lower() for n in names[:7]] != practice:  # a copy may hold folders
        # Dropping 7 entries blindly from a differently ordered file would shift every score.
        raise DatasetError(f"{spec.name}: {names_file} should start with the 7 practice images "
                           f"{practice}, but starts with {names[:7]}; use the release's own .mat files")
    names, mos = names[7:], mos[7:]
    if not np.all(np.isfinite(mos)):
        row = int(np.flatnonzero(~np.isfinite(mos))[0])
        raise DatasetError(f"{spec.name}: {mos_file} entry {row + 8} is not a finite MOS")
    images_dir = locate(names_file.parent.parent, spec.images_dir, spec.name)
    return frame([images_dir / n for n in names], mos, source=names_file)


def parse_flive(spec, root: Path) -> pd.DataFrame:
    """FLIVE (PaQ-2-PiQ) whole images: ``labels_image.csv`` (name, mos), names relative to ``database/``; the
    official split comes from ``labels640.csv`` (test) and ``labels=640_padded.csv`` (``is_valid``).

    FLIVE_Database keeps ``labels_image.csv`` inside ``database/`` (and a copy beside it); ARNIQA's README
    puts only the outer copy beside ``database/``. Both are read."""
    labels = locate(root, spec.score_file, spec.name, required=False)
    images = labels.parent if labels is not None else None
    if labels is None:
        labels = locate(root, Path(spec.score_file).name, spec.name, required=False)
        images = labels.parent / "database" if labels is not None else None
        if images is None or not images.is_dir():
            raise DatasetError(f"{spec.name}: neither {spec.score_file} nor {Path(spec.score_file).name} beside a "
                               f"database/ folder of images under {root} (nor one folder down); point at the "
                               "FLIVE_Database folder that holds database/")
    table = read_csv_columns(labels, spec.name, ["name", "mos"])
    names = name_column(table, "name", labels, spec.name)
    raw = numeric_column(table, "mos", labels, spec.name)
    split_files = {}
    for file in ("labels640.csv", "labels=640_padded.csv"):  # baidut/PaQ-2-PiQ database/, not FLIVE_Database
        found = [p for p in dict.fromkeys((labels.parent / file, images / file)) if p.is_file()]
        if found:
            split_files[file] = found[0]
    if len(split_files) == 1:  # half a split would call every other test image train
        (have,), (missing,) = split_files, {"labels640.csv", "labels=640_padded.csv"} - set(split_files)
        raise DatasetError(f"{spec.name}: {split_files[have]} is there but not {missing}: the official split needs "
                           f"both (from https://github.com/baidut/PaQ-2-PiQ, folder database/); add it beside "
                           f"{have}, or remove {have} to go without the official split")
    split = ""
    if split_files:
        tests, padded_file = split_files["labels640.csv"], split_files["labels=640_padded.csv"]
        test = set(text_column(read_csv_columns(tests, spec.name, ["name_image"]), "name_image", tests, spec.name))
        padded = read_csv_columns(padded_file, spec.name, ["name_image", "is_valid"])
        valid = text_column(padded, "is_valid", padded_file, spec.name).str.lower()
        odd = ~valid.isin(["true", "false", "1", "0"])  # any other word would have made its image train silently
        if odd.any():
            row = int(np.flatnonzero(odd.to_numpy())[0])
            raise bad_line(padded, row, padded_file, spec.name, f"'is_valid' is {padded['is_valid'].iloc[row]!r}",
                           remedy="expected True or False, as in the published file")
        val = set(text_column(padded, "name_image", padded_file, spec.name)[valid.isin(["true", "1"]).to_numpy()])
        split = ["test" if n in test else "val" if n in val else "train" for n in names]
    return frame([images / n for n in names], raw, source=labels, split=split)


def parse_agiqa3k(spec, root: Path) -> pd.DataFrame:
    """AGIQA-3K: ``data.csv`` with ``name`` and ``mos_quality`` (perceptual quality;
    ``mos_align`` is text alignment and is not a quality score)."""
    table_file = locate(root, spec.score_file, spec.name)
    table = read_csv_columns(table_file, spec.name, ["name", "mos_quality"])
    names = name_column(table, "name", table_file, spec.name)
    raw = numeric_column(table, "mos_quality", table_file, spec.name)
    # The image zip and data.csv are separate downloads, and public copies differ
    # (AGIQA-3K/, AGIQA-3k/Images/, images/, data.csv inside the image folder).
    images_dir = image_folder(table_file.parent, spec, names[0])
    # Images of one prompt share content; the prompt is the natural content id.
    content = text_column(table, "prompt", table_file, spec.name).tolist() if "prompt" in table.columns else None
    return frame([images_dir / n for n in names], raw, source=table_file, content_id=content)


def parse_bid(spec, root: Path) -> pd.DataFrame:
    """BID: ``DatabaseGrades.xlsx`` (or ``.xls``), first sheet: row 1 is a header ("Image
    Number", "Average Subjective Grade"), then one row per image with the image number in
    column A and its mean grade (0-5) in column B; images are ``DatabaseImage%04d.JPG``.

    Most published loaders (HyperIQA-style ``BIDFolder``) read the cells by position, not
    by header text, so the columns are taken by position here too.
    """
    # Copies of the grades circulate as DatabaseGrades.xlsx (the Python loaders) and as the legacy
    # DatabaseGrades.xls (a public MATLAB loader: name, MOS, then per-subject grades from column 4).
    xlsx = (locate(root, spec.score_file, spec.name, required=False)
            or locate(root, str(Path(spec.score_file).with_suffix(".xls")), spec.name, required=False))
    if xlsx is None:
        raise DatasetError(f"{spec.name}: neither {spec.score_file} nor DatabaseGrades.xls under {root} (nor one "
                           "folder down); point at the folder that holds BID's grades file and images")
    table = read_excel_positional(xlsx, spec.name, columns=2)
    table = table[table.iloc[:, 0].notna() | table.iloc[:, 1].notna()].reset_index(drop=True)
    table.columns = ["image number (column A)", "grade (column B)"]
    numbers = numeric_column(table, "image number (column A)", xlsx, spec.name)
    raw = numeric_column(table, "grade (column B)", xlsx, spec.name)
    if np.any(numbers != np.round(numbers)):
        row = int(np.flatnonzero(numbers != np.round(numbers))[0])
        raise DatasetError(f"{spec.name}: {xlsx} line {row + 2}: image number {numbers[row]:g} is not an integer")
    names = pd.DataFrame({"n": [f"DatabaseImage{int(n):04d}.JPG" for n in numbers]})
    name_column(names, "n", xlsx, spec.name)
    # HyperIQA-style loaders read the images beside DatabaseGrades.xlsx, another loader from Image/.
    images_dir = image_folder(xlsx.parent, spec, names["n"].iloc[0])
    return frame([images_dir / n for n in names["n"]], raw, source=xlsx)
