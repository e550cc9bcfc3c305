"""Parsers for synthetically distorted sets (many distorted versions per reference).

``content_id`` is always the reference image, so that splits built on it are
content-disjoint: no reference appears on both sides of a train/test split.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .parsers_authentic import frame
from .scorefiles import (PUBLISHED_HINT, DatasetError, bad_line, case_insensitive_index, line_of, load_mat, locate,
                         mat_strings, mat_vector, name_column, numeric_column, parse_score, read_csv_columns,
                         read_excel_columns, read_text_lines, text_column)

# LIVE release 2: dmos_realigned.mat is ordered by these folders, each img1..imgN.
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
# Published beside databaserelease2.zip, not inside it (the release's own readme lists only dmos.mat).
LIVE_REALIGNED_URL = "https://live.ece.utexas.edu/research/quality/release2/dmos_realigned.mat"

CSIQ_SHEET_URL = "https://s2.smu.edu/~eclarson/csiq/csiq.DMOS.xlsx"
# CSIQ spreadsheet dst_type -> (folder in dst_imgs, tag in the file name).
CSIQ_TYPES = {"noise": ("awgn", "AWGN"), "jpeg": ("jpeg", "JPEG"), "jpeg 2000": ("jpeg2000", "jpeg2000"),
              "fnoise": ("fnoise", "fnoise"), "blur": ("blur", "BLUR"), "contrast": ("contrast", "contrast")}

TID2013_TYPES = (
    "additive gaussian noise", "additive noise in color components", "spatially correlated noise",
    "masked noise", "high frequency noise", "impulse noise", "quantization noise", "gaussian blur",
    "image denoising", "jpeg", "jpeg2000", "jpeg transmission errors", "jpeg2000 transmission errors",
    "non eccentricity pattern noise", "local block-wise distortions", "mean shift", "contrast change",
    "change of color saturation", "multiplicative gaussian noise", "comfort noise",
    "lossy compression of noisy images", "color quantization with dither", "chromatic aberrations",
    "sparse sampling and reconstruction")

KADID_TYPES = (
    "gaussian blur", "lens blur", "motion blur", "color diffusion", "color shift", "color quantization",
    "color saturation 1", "color saturation 2", "jpeg2000", "jpeg", "white noise",
    "white noise in color component", "impulse noise", "multiplicative noise", "denoise", "brighten",
    "darken", "mean shift", "jitter", "non-eccentricity patch", "pixelate", "quantization", "color block",
    "high sharpen", "contrast change")

# The authors' README calls the label folder this; the NTIRE release calls it Train_Label.
PIPAL_OTHER_LABEL_DIRS = ("MOS_Scores_train",)

SIQAD_TYPES = ("gaussian noise", "gaussian blur", "motion blur", "contrast change", "jpeg", "jpeg2000",
               "layer segmentation based coding")

SCID_TYPES = ("gaussian noise", "gaussian blur", "motion blur", "contrast change", "jpeg", "jpeg2000",
              "color saturation change", "hevc-scc", "color quantization with dithering")


def _typed(types, index: int, where: str) -> str:
    if not 1 <= index <= len(types):
        raise DatasetError(f"{where}: distortion type {index} is outside 1..{len(types)}")
    return types[index - 1]


def parse_live(spec, root: Path) -> pd.DataFrame:
    """LIVE IQA release 2: ``dmos_realigned.mat`` (``dmos_new``, ``orgs``) and
    ``refnames_all.mat``; entries with ``orgs == 1`` are the references' own copies
    (DMOS 0) and are dropped, leaving 779 distorted images. A copy with only the
    release's own ``dmos.mat`` (``dmos``, ``orgs``; what pyiqa reads) is read from it, with
    a warning, and its manifest says so in ``score_source``: the two scales differ."""
    dmos_file, variable = locate(root, "dmos_realigned.mat", spec.name, required=False), "dmos_new"
    if dmos_file is None:
        dmos_file, variable = locate(root, "dmos.mat", spec.name, required=False), "dmos"
        if dmos_file is None:
            raise DatasetError(f"{spec.name}: neither 'dmos_realigned.mat' nor the release's 'dmos.mat' under "
                               f"{root} (nor one folder down); save dmos_realigned.mat ({LIVE_REALIGNED_URL}) "
                               "next to refnames_all.mat (or next to the databaserelease2 folder)")
        # The original values differ from the realigned ones (jp2k/img2.bmp: 28.0 against 15.5), so
        # numbers on them compare only with papers that used dmos.mat too.
        warnings.warn(f"{spec.name}: reading the release's original {dmos_file} ('dmos'): most published LIVE "
                      f"numbers use the realigned DMOS, a separate download ({LIVE_REALIGNED_URL}); save it next "
                      "to refnames_all.mat and prepare again to use it", stacklevel=2)
    # dmos_realigned.mat is downloaded on its own, so it often sits next to the
    # databaserelease2/ folder rather than in it: the images are wherever refnames_all.mat is.
    names_file = (locate(dmos_file.parent, "refnames_all.mat", spec.name, required=False)
                  or locate(root, "refnames_all.mat", spec.name))
    base = names_file.parent
    content = load_mat(dmos_file, spec.name, [variable, "orgs"])
    dmos, orgs = (mat_vector(content, v, dmos_file, spec.name) for v in (variable, "orgs"))
    odd = orgs[~np.isin(orgs, (0, 1))]  # 1 marks a reference's own copy; anything else would keep or drop blindly
    if odd.size:
        raise DatasetError(f"{spec.name}: {dmos_file}: 'orgs' holds {sorted({float(v) for v in odd})[:3]}; "
                           "the release marks each image 0 (distorted) or 1 (a reference's copy)")
    orgs = orgs.astype(int)
    refnames = mat_strings(load_mat(names_file, spec.name, ["refnames_all"])["refnames_all"])
    blank = [i for i, r in enumerate(refnames) if not r]
    if blank:  # would make the refimgs/ folder itself the reference (and 'refimgs' the content)
        raise DatasetError(f"{spec.name}: {names_file}: 'refnames_all' entry {blank[0] + 1} is blank ({len(blank)} "
                           "such entries); replace the file with the release's own")
    expected = sum(n for _, n in LIVE_FOLDERS)
    if not len(dmos) == len(orgs) == len(refnames) == expected:
        raise DatasetError(f"{spec.name}: {variable}/orgs/refnames_all have {len(dmos)}/{len(orgs)}/"
                           f"{len(refnames)} entries; release 2 has {expected} (jp2k 227, jpeg 233, "
                           f"wn/gblur/fastfading 174 each)")
    images, distortion, refs = [], [], []
    for folder, count in LIVE_FOLDERS:
        images += [base / folder / f"img{i}.bmp" for i in range(1, count + 1)]
        distortion += [folder] * count
    keep = orgs != 1
    refs = [str(base / "refimgs" / r) for r in refnames]
    pick = lambda values: [v for v, k in zip(values, keep) if k]  # noqa: E731
    table = frame(pick(images), dmos[keep], source=names_file, content_id=[Path(r).stem for r in pick(refs)],
                  reference=pick(refs), distortion=pick(distortion))
    if variable == "dmos":
        table.attrs["score_source"] = "human DMOS (LIVE IQA, the release's original dmos.mat, not realigned)"
    return table


def parse_csiq(spec, root: Path) -> pd.DataFrame:
    """CSIQ: sheet ``all_by_image`` of ``csiq.DMOS.xlsx`` (image, dst_idx, dst_type,
    dst_lev, dmos_std, dmos); files are ``dst_imgs/<folder>/<image>.<TAG>.<lev>.png`` and
    ``src_imgs/<image>.png``, or the same without dst_imgs/ and src_imgs/ (see below), or every
    distorted image in one folder ``dst_imgs/`` or ``dst_imgs_all/`` (pyiqa's and HyperIQA's copies)."""
    xlsx = locate(root, "csiq.DMOS.xlsx", spec.name, required=False)
    if xlsx is None:
        derived = locate(root, "csiq_label.txt", spec.name, required=False)
        seen = (f"; {derived} is HyperIQA's list derived from it (names and rounded DMOS), which iqabench does "
                "not read" if derived else "")
        raise DatasetError(f"{spec.name}: 'csiq.DMOS.xlsx' not found under {root} (nor one folder down){seen}; "
                           f"download the authors' spreadsheet ({CSIQ_SHEET_URL}) into that folder")
    table = read_excel_columns(xlsx, spec.name, ["image", "dst_type", "dst_lev", "dmos"],
                               sheet="all_by_image", header_search=True)
    first = table.attrs.get("first_line", 2)
    table = table[table["image"].notna()].reset_index(drop=True)
    raw = numeric_column(table, "dmos", xlsx, spec.name, first)
    levels = numeric_column(table, "dst_lev", xlsx, spec.name, first).astype(int)
    base = xlsx.parent
    # dst_imgs.zip and src_imgs.zip hold their files without a top folder (public scripts
    # unzip them into dst_imgs/ and src_imgs/ themselves), so `datasets download`, which
    # unpacks into the dataset folder, leaves <folder>/ and the references next to the
    # sheet. Both layouts are read; names are matched case-insensitively, as CSIQ's
    # tags mix case (AWGN, BLUR, jpeg2000) and some copies have been lower-cased.
    dst_dir = base / "dst_imgs" if (base / "dst_imgs").is_dir() else base
    src_dir = base / "src_imgs" if (base / "src_imgs").is_dir() else base
    src_index = case_insensitive_index(src_dir)
    folders = {p.name.lower(): p for p in dst_dir.iterdir() if p.is_dir()} if dst_dir.is_dir() else {}
    # pyiqa's and HyperIQA's copies keep every distorted image in one folder (dst_imgs/, dst_imgs_all/).
    flat = {**case_insensitive_index(base / "dst_imgs_all"), **case_insensitive_index(dst_dir)}
    dst_index: dict[str, dict[str, Path]] = {}
    images, refs, contents, kinds = [], [], [], []
    dst_types = text_column(table, "dst_type", xlsx, spec.name, first)  # a blank cell was 'unknown dst_type nan'
    for row, (image, dst_type, level) in enumerate(zip(table["image"], dst_types, levels)):
        # The sheet stores the numeric name 1600 as a number.
        image = str(int(image)) if isinstance(image, (int, float, np.integer, np.floating)) else str(image).strip()
        key = dst_type.lower()
        if key not in CSIQ_TYPES:
            raise bad_line(table, row, xlsx, spec.name, f"unknown dst_type {dst_type!r}", first,
                           f"expected one of {sorted(CSIQ_TYPES)}")
        folder, tag = CSIQ_TYPES[key]
        if folder not in dst_index:
            dst_index[folder] = case_insensitive_index(folders.get(folder, dst_dir / folder))
        name = f"{image}.{tag}.{level}.png"
        images.append(dst_index[folder].get(name.lower()) or flat.get(name.lower(), dst_dir / folder / name))
        refs.append(str(src_index.get(f"{image}.png".lower(), src_dir / f"{image}.png")))
        contents.append(image)  # the sheet's name: stable whatever case the files have
        kinds.append(folder)
    check = pd.DataFrame({"n": [str(p) for p in images]})
    name_column(check, "n", xlsx, spec.name, first)
    return frame(images, raw, source=xlsx, content_id=contents, reference=refs,
                 distortion=kinds, level=[str(v) for v in levels])


def parse_tid2013(spec, root: Path) -> pd.DataFrame:
    """TID2013: ``mos_with_names.txt`` lines ``<mos> <name>`` such as ``5.51429 i01_01_1.bmp``.

    File names on disk differ in case from the list (``I25``/``i25``, ``.BMP``),
    so images and references are matched case-insensitively.
    """
    mos_file = locate(root, "mos_with_names.txt", spec.name)
    base = mos_file.parent
    dist_index = case_insensitive_index(base / "distorted_images")
    ref_index = case_insensitive_index(base / "reference_images")
    names, raw, refs, types, levels = [], [], [], [], []
    pattern = re.compile(r"^i(\d{2})_(\d{2})_(\d)\.bmp$", re.IGNORECASE)
    seen: dict[str, int] = {}
    for number, line in enumerate(read_text_lines(mos_file, spec.name), start=1):
        if not line.strip():
            continue
        parts = line.split()
        match = pattern.match(parts[1]) if len(parts) == 2 else None
        if match is None:
            raise DatasetError(f"{spec.name}: {mos_file} line {number}: expected '<mos> iRR_TT_L.bmp', got {line!r}")
        value = parse_score(parts[0], f"{spec.name}: {mos_file} line {number}", "MOS")
        key = parts[1].lower()
        if key in seen:
            raise DatasetError(f"{spec.name}: {mos_file} line {number}: {parts[1]} is listed again "
                               f"(first on line {seen[key]})")
        seen[key] = number
        ref_key = f"i{match.group(1)}.bmp"
        names.append(dist_index.get(key, base / "distorted_images" / parts[1]))
        refs.append(str(ref_index.get(ref_key, base / "reference_images" / ref_key.upper())))
        raw.append(value)
        types.append(_typed(TID2013_TYPES, int(match.group(2)), f"{spec.name}: {mos_file} line {number}"))
        levels.append(match.group(3))
    return frame(names, raw, source=mos_file, content_id=[f"i{Path(r).stem[1:]}".lower() for r in refs],
                 reference=refs, distortion=types, level=levels)


def parse_kadid(spec, root: Path) -> pd.DataFrame:
    """KADID-10k: ``dmos.csv`` with exactly dist_img, ref_img, dmos, var; despite its
    name ``dmos`` is a MOS on 1-5 (higher is better). Names: ``I01_01_01.png``."""
    csv = locate(root, "dmos.csv", spec.name)
    table = read_csv_columns(csv, spec.name, ["dist_img", "ref_img", "dmos", "var"], exact=True)
    names = name_column(table, "dist_img", csv, spec.name)
    raw = numeric_column(table, "dmos", csv, spec.name)
    images_dir = locate(csv.parent, spec.images_dir, spec.name)
    ref_names = text_column(table, "ref_img", csv, spec.name).tolist()
    pattern = re.compile(r"^(I\d{2})_(\d{2})_(\d{2})\.png$")
    types, levels = [], []
    for row, (name, ref) in enumerate(zip(names, ref_names)):
        match = pattern.match(name)
        if match is None:
            raise bad_line(table, row, csv, spec.name, f"dist_img {name!r} is not 'Ixx_tt_ll.png'")
        # The reference is the content: a row naming another one would join the wrong content (and leak splits).
        if ref != f"{match.group(1)}.png":
            raise bad_line(table, row, csv, spec.name, f"ref_img {ref!r} does not match dist_img {name!r}",
                           remedy=PUBLISHED_HINT)
        types.append(_typed(KADID_TYPES, int(match.group(2)), f"{spec.name}: {csv} line {line_of(table, row)}"))
        levels.append(str(int(match.group(3))))
    refs = [str(images_dir / r) for r in ref_names]
    return frame([images_dir / n for n in names], raw, source=csv, content_id=[Path(r).stem for r in refs],
                 reference=refs, distortion=types, level=levels)


def parse_pipal(spec, root: Path) -> pd.DataFrame:
    """PIPAL public training part: one label file per reference, lines
    ``A0001_00_00.bmp,<Elo>``; the reference is ``A0001.bmp``. The NTIRE release names
    the label folder ``Train_Label`` (images ``Train_Dis``/``Train_Ref``), the authors'
    README ``MOS_Scores_train`` (images ``Distortion_1..4``/``Reference_train``); both
    are accepted, and images and references are found by name anywhere under the root."""
    label_dir = None
    for folder in (spec.score_file, *PIPAL_OTHER_LABEL_DIRS):
        label_dir = label_dir or locate(root, folder, spec.name, required=False)
    if label_dir is None:
        raise DatasetError(f"{spec.name}: no label folder ({' or '.join((spec.score_file, *PIPAL_OTHER_LABEL_DIRS))}) "
                           f"under {root} nor one folder down; point at the folder that holds the training part")
    base = label_dir.parent
    files = sorted(label_dir.glob("*.txt"))
    if not files:
        raise DatasetError(f"{spec.name}: no label files (*.txt) in {label_dir}")
    by_name = {p.name: p for p in base.rglob("*") if p.is_file() and p.suffix.lower() == ".bmp"}
    names, raw, refs = [], [], []
    seen: dict[str, str] = {}
    for file in files:
        # ASCII as published; a copy re-saved with a BOM still matches its first name (read_text_lines).
        for number, line in enumerate(read_text_lines(file, spec.name), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            where = f"{spec.name}: {file} line {number}"
            if len(parts) != 2:
                raise DatasetError(f"{where}: expected '<image>,<elo>', got {line!r}")
            value = parse_score(parts[1], where, "Elo score")
            if parts[0] in seen:
                raise DatasetError(f"{where}: {parts[0]} is listed again (first in {seen[parts[0]]})")
            seen[parts[0]] = f"{file.name} line {number}"
            names.append(by_name.get(parts[0], base / "Train_Dis" / parts[0]))
            raw.append(value)
            ref_name = f"{parts[0].split('_')[0]}.bmp"
            refs.append(str(by_name.get(ref_name, base / "Train_Ref" / ref_name)))
    return frame(names, raw, source=label_dir, content_id=[Path(r).stem for r in refs], reference=refs)


def parse_siqad(spec, root: Path) -> pd.DataFrame:
    """SIQAD: ``DMOS_SIQAD.mat`` holds ``DMOS`` as a 49 x 20 matrix: row
    (type-1)*7 + (level-1) for 7 types x 7 levels, column = reference cim1..cim20, so
    MATLAB's ``DMOS(:)`` runs reference, then type, then level. Images are
    ``DistortedImages/cim<ref>_<type>_<level>.bmp``, references ``references/cim<ref>.bmp``
    (the layout public evaluation scripts read; see docs/datasets.md)."""
    mat = locate(root, spec.score_file, spec.name)
    dmos = np.asarray(load_mat(mat, spec.name, ["DMOS"])["DMOS"], dtype=np.float64)
    if dmos.shape in ((980, 1), (1, 980)):
        # A copy stored as the 980-vector DMOS(:) also circulates (a public loader indexes it as
        # ref*49 + type*7 + level); that is the matrix's column-major order, so fold it back.
        dmos = dmos.reshape((49, 20), order="F")
    if dmos.shape != (49, 20):
        raise DatasetError(f"{spec.name}: DMOS in {mat} has shape {dmos.shape}; SIQAD's is 49 x 20 "
                           f"(or the 980-vector DMOS(:))")
    base = mat.parent
    images, raw, refs, types, levels = [], [], [], [], []
    for ref in range(1, 21):
        for kind in range(1, 8):
            for level in range(1, 8):
                value = dmos[(kind - 1) * 7 + level - 1, ref - 1]
                if not np.isfinite(value):
                    raise DatasetError(f"{spec.name}: {mat} DMOS[{(kind - 1) * 7 + level}, {ref}] is not finite")
                images.append(base / spec.images_dir / f"cim{ref}_{kind}_{level}.bmp")
                raw.append(value)
                refs.append(str(base / "references" / f"cim{ref}.bmp"))
                types.append(SIQAD_TYPES[kind - 1])
                levels.append(str(level))
    return frame(images, raw, source=mat, content_id=[Path(r).stem for r in refs], reference=refs,
                 distortion=types, level=levels)


def parse_scid(spec, root: Path) -> pd.DataFrame:
    """SCID: ``MOS_SCID.txt``, no header, whitespace-separated lines ``SCI01 SCI01_1_1 <mos>``
    (reference, distorted name without extension, MOS); images ``DistortedSCIs/<name>.bmp``,
    references ``ReferenceSCIs/<ref>.bmp``; types 1..9 in the order of SCID_TYPES."""
    txt = locate(root, spec.score_file, spec.name)
    base = txt.parent
    pattern = re.compile(r"^(SCI\d{2})_(\d)_(\d)$", re.IGNORECASE)
    images, raw, refs, types, levels = [], [], [], [], []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_text_lines(txt, spec.name), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{spec.name}: {txt} line {number}"
        match = pattern.match(parts[1]) if len(parts) == 3 else None
        if match is None:
            raise DatasetError(f"{where}: expected 'SCIxx SCIxx_t_l <mos>', got {line!r}")
        if parts[0].upper() != match.group(1).upper():
            raise DatasetError(f"{where}: reference {parts[0]!r} does not match image {parts[1]!r}; the columns "
                               f"are reference, image, MOS")
        value = parse_score(parts[2], where, "MOS")
        if parts[1] in seen:
            raise DatasetError(f"{where}: {parts[1]} is listed again (first on line {seen[parts[1]]})")
        seen[parts[1]] = number
        images.append(base / spec.images_dir / f"{parts[1]}.bmp")
        raw.append(value)
        refs.append(str(base / "ReferenceSCIs" / f"{parts[0]}.bmp"))
        types.append(_typed(SCID_TYPES, int(match.group(2)), where))
        levels.append(match.group(3))
    return frame(images, raw, source=txt, content_id=[Path(r).stem for r in refs], reference=refs,
                 distortion=types, level=levels)
