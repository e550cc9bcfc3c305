"""ARNIQA's official splits (``datasets/<NAME>/splits/{train,val,test}.npy`` in miccunifi/ARNIQA) as :class:`Split`.

Each file is a 10 x n integer array: row k lists the image indices of split k,
padded with -1 to a common length (ARNIQA's ``data/dataset_*.py`` drop the
-1s; its ``test.py`` indexes with them unfiltered, so there -1 is the score
file's last image). FLIVE's files are 1-D, its one official split
(``data/dataset_flive.py`` returns ``self.splits[phase]`` whole). An index counts rows of the score file ARNIQA's loader reads, in file
order (KADID-10k ``dmos.csv``, LIVE ``LIVE.txt``, ...); ``order`` gives the
image names in that order, so the splits apply to a manifest of any row order.
Use them with :func:`iqabench.evaluation.run_splits` (``splits=``), which then
reports the paper's exact train / val / test images.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .splits import Split

PARTS = ("train", "val", "test")


# iqabench dataset -> (its folder under ARNIQA's data_base_path, the list its loader indexes when that is not the
# published score file). test.py evaluates these six; the KonIQ-10k and CLIVE split files in the repository
# have no loader there, so the order their indices count is unknown and they are not read.
DATASETS = {"live": ("LIVE", "LIVE.txt"), "csiq": ("CSIQ", "CSIQ.txt"), "tid2013": ("TID2013", None),
            "kadid10k": ("KADID10K", None), "flive": ("FLIVE", None), "spaq": ("SPAQ", None)}
LISTS_URL = "https://github.com/icbcbicc/IQA-Dataset/blob/master/csv/"  # where ARNIQA's README sends for them


def missing_files(root: str | Path, datasets: list[str]) -> list[Path]:
    """The files ARNIQA's layout needs under ``root`` for the sets in ``datasets`` it covers, and lacks: checked
    with the params, before any stage runs (evaluate reads them only after every feature is extracted)."""
    needed = []
    for dataset in (d for d in datasets if d in DATASETS):
        name, listing = DATASETS[dataset]
        needed += [Path(root) / name / "splits" / f"{part}.npy" for part in PARTS]
        needed += [Path(root) / name / listing] if listing else []
    return [path for path in needed if not path.is_file()]


def for_dataset(dataset: str, frame: pd.DataFrame, root: str | Path) -> list[Split] | None:
    """ARNIQA's splits of ``dataset`` as rows of its manifest ``frame``, or None when ARNIQA evaluates no such set.

    ``root`` is laid out as ARNIQA's ``data_base_path`` (``LIVE/splits/``, ``LIVE/LIVE.txt``, ``CSIQ/...``), or
    its repository's ``datasets/`` with LIVE.txt and CSIQ.txt copied beside their ``splits/``. The other four
    index their published score file (KADID-10k ``dmos.csv``, TID2013 ``mos_with_names.txt``, SPAQ's xlsx,
    FLIVE ``labels_image.csv``), whose row order the manifest keeps. ARNIQA's splits keep references apart (its
    LIVE, CSIQ, TID2013 and KADID-10k files, checked): a split mixing them here means the manifest is not in
    the order the indices count, and is refused rather than evaluated on leaked content.
    """
    if dataset not in DATASETS:
        return None
    name, listing = DATASETS[dataset]
    folder = Path(root) / name / "splits"
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: {folder} does not exist; evaluate.arniqa_splits names a folder with "
                                f"ARNIQA's {name}/splits/ (datasets/{name}/splits in github.com/miccunifi/ARNIQA)")
    order = None
    if listing is not None:
        path = Path(root) / name / listing
        if not path.is_file():
            raise FileNotFoundError(f"{dataset}: ARNIQA's {name} indices count the rows of {listing}, which is not "
                                    f"at {path}; save it there from {LISTS_URL}{listing} (ARNIQA's README)")
        try:
            table = pd.read_csv(path)
        except (ValueError, OSError) as err:  # empty, binary or not UTF-8
            raise ValueError(f"{path}: not readable as ARNIQA's {listing} ({err}); replace it with "
                             f"{LISTS_URL}{listing}") from None
        if "dis_img_path" not in table.columns:
            raise ValueError(f"{path}: no dis_img_path column (columns {list(table.columns)}); expected ARNIQA's "
                             f"{listing} ({LISTS_URL}{listing})")
        depth = 2 if dataset == "live" else 1  # LIVE's names repeat across its five folders
        order = ["/".join(PurePosixPath(str(p).replace("\\", "/")).parts[-depth:]) for p in table["dis_img_path"]]
    splits = read_arniqa_splits(folder, order, frame["image"])
    contents = frame["content_id"].astype(str).to_numpy()
    for k, split in enumerate(splits):
        shared = sorted(set(contents[split.train]) & set(contents[np.concatenate([split.val, split.test])]))
        if shared:
            raise ValueError(f"{dataset}: ARNIQA's split {k} ({folder}) puts reference(s) {shared[:3]} on both "
                             f"sides of this manifest: its rows are not in the order the indices count "
                             f"({listing or 'the published score file'}); prepare it from that file as published")
    return splits


def read_arniqa_splits(folder: str | Path, order: list[str] | None, manifest_images) -> list[Split]:
    """The splits in ``folder`` as row indices of a manifest whose ``image`` column is ``manifest_images``.

    ``order``: ARNIQA's image names in its score file's order: file names (KADID-10k's
    ``I01_01_01.png``), or with the folders that make them unique where names repeat
    (LIVE's ``jp2k/img2.bmp``: ``LIVE.txt``'s ``dis_img_path`` less its first folder, as
    ``data/dataset_live.py`` reads it). Each is matched, ignoring case (TID2013's ``i25``
    files are ``I25``), to the manifest image whose path ends with it; None: the manifest is
    in that order. Raises ValueError naming the file and the problem: a missing part, an
    index outside ``order``, an image the manifest lacks, a part overlapping another.
    """
    folder = Path(folder)
    n_images = len(manifest_images) if order is None else len(order)
    arrays = {}
    for part in PARTS:
        path = folder / f"{part}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; ARNIQA's split folders hold train.npy, val.npy and "
                                    "test.npy (datasets/<NAME>/splits/ in github.com/miccunifi/ARNIQA)")
        try:
            array = np.load(path, allow_pickle=False)  # never unpickled: an object array is refused
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path}: not a NumPy file of split indices ({err}); replace it with ARNIQA's "
                             f"{part}.npy") from None
        if array.ndim == 1:  # FLIVE: one split, e.g. train.npy of shape (30253,)
            array = array[None]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{path}: expected a 2-D integer array (splits x indices, -1 padded) or FLIVE's "
                             f"1-D one, got {array.dtype} {array.shape}")
        if array.size == 0:
            raise ValueError(f"{path}: holds no indices; replace it with ARNIQA's {part}.npy")
        if array.max() >= n_images or array.min() < -1:
            counted = "the score file order" if order is not None else "the manifest (a partial copy of the set?)"
            raise ValueError(f"{path}: indices span {array.min()}..{array.max()} but {counted} has "
                             f"{n_images} images; ARNIQA's files index the whole published set, in its order")
        arrays[part] = array
    if len({a.shape[0] for a in arrays.values()}) != 1:
        raise ValueError(f"{folder}: train, val and test hold different numbers of splits "
                         f"{ {p: a.shape[0] for p, a in arrays.items()} }")
    rows_in_order = np.arange(n_images) if order is None else _rows(order, manifest_images)
    splits = []
    for k in range(arrays["train"].shape[0]):
        parts = {p: rows_in_order[arrays[p][k][arrays[p][k] >= 0]] for p in PARTS}
        for part, rows in parts.items():
            if np.unique(rows).size != rows.size or (part != "val" and rows.size == 0):
                what = "lists an image twice" if rows.size else "is empty"
                raise ValueError(f"{folder / (part + '.npy')}: split {k} {what}; replace it with ARNIQA's file")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if np.intersect1d(parts[a], parts[b]).size:
                raise ValueError(f"{folder}: split {k} puts the same image(s) in {a} and {b}")
        splits.append(Split(train=parts["train"], val=parts["val"], test=parts["test"], seed=None))
    return splits


def _rows(order: list[str], manifest_images) -> np.ndarray:
    """The manifest row of each name of ``order`` (see :func:`read_arniqa_splits`)."""
    order = [str(n).replace("\\", "/").lower() for n in order]
    depths = {len(PurePosixPath(n).parts) for n in order}
    if len(depths) != 1:
        raise ValueError(f"`order` mixes names with {sorted(depths)} path parts; give every image as a file name, "
                         "or every one with the same folders (e.g. jp2k/img2.bmp)")
    depth = depths.pop()
    names = pd.Series(manifest_images).map(
        lambda p: "/".join(PurePosixPath(str(p).replace("\\", "/")).parts[-depth:]).lower())
    row_of = pd.Series(np.arange(len(names)), index=names)
    if row_of.index.duplicated().any():
        raise ValueError(f"manifest: image names repeat (e.g. {row_of.index[row_of.index.duplicated()][0]}); "
                         "ARNIQA's indices cannot be mapped by name: give `order` with the folders that tell "
                         "them apart (LIVE: jp2k/img2.bmp)")
    repeated = pd.Series(order)[pd.Series(order).duplicated()]
    if not repeated.empty:
        raise ValueError(f"ARNIQA's order names {repeated.iloc[0]!r} twice (row {int(repeated.index[0]) + 2} of its "
                         "list, counting the header): replace the list with ARNIQA's")
    missing = sorted(set(order) - set(row_of.index))
    if missing:
        raise ValueError(f"manifest lacks {len(missing)} image(s) of ARNIQA's order, e.g. {missing[:3]}")
    return row_of.loc[order].to_numpy()
