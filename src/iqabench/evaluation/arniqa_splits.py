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


def read_arniqa_splits(folder: str | Path, order: list[str], manifest_images) -> list[Split]:
    """The splits in ``folder`` as row indices of a manifest whose ``image`` column is ``manifest_images``.

    ``order``: ARNIQA's image names in its score file's order: file names (KADID-10k's
    ``I01_01_01.png``), or with the folders that make them unique where names repeat
    (LIVE's ``jp2k/img2.bmp``: ``LIVE.txt``'s ``dis_img_path`` less its first folder, as
    ``data/dataset_live.py`` reads it). Each is matched to the manifest image whose path
    ends with it. Raises ValueError naming the file and the problem: a missing part, an
    index outside ``order``, an image the manifest lacks, a part overlapping another.
    """
    folder = Path(folder)
    arrays = {}
    for part in PARTS:
        path = folder / f"{part}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; ARNIQA's split folders hold train.npy, val.npy and "
                                    "test.npy (datasets/<NAME>/splits/ in github.com/miccunifi/ARNIQA)")
        array = np.load(path, allow_pickle=False)
        if array.ndim == 1:  # FLIVE: one split, e.g. train.npy of shape (30253,)
            array = array[None]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{path}: expected a 2-D integer array (splits x indices, -1 padded) or FLIVE's "
                             f"1-D one, got {array.dtype} {array.shape}")
        if array.max() >= len(order) or array.min() < -1:
            raise ValueError(f"{path}: indices span {array.min()}..{array.max()} but the score file order has "
                             f"{len(order)} images; is `order` the file ARNIQA reads for this dataset?")
        arrays[part] = array
    if len({a.shape[0] for a in arrays.values()}) != 1:
        raise ValueError(f"{folder}: train, val and test hold different numbers of splits "
                         f"{ {p: a.shape[0] for p, a in arrays.items()} }")
    order = [str(n).replace("\\", "/") for n in order]
    depths = {len(PurePosixPath(n).parts) for n in order}
    if len(depths) != 1:
        raise ValueError(f"`order` mixes names with {sorted(depths)} path parts; give every image as a file name, "
                         "or every one with the same folders (e.g. jp2k/img2.bmp)")
    depth = depths.pop()
    names = pd.Series(manifest_images).map(lambda p: "/".join(PurePosixPath(str(p).replace("\\", "/")).parts[-depth:]))
    row_of = pd.Series(np.arange(len(names)), index=names)
    if row_of.index.duplicated().any():
        raise ValueError(f"manifest: image names repeat (e.g. {row_of.index[row_of.index.duplicated()][0]}); "
                         "ARNIQA's indices cannot be mapped by name: give `order` with the folders that tell "
                         "them apart (LIVE: jp2k/img2.bmp)")
    missing = sorted(set(order) - set(row_of.index))
    if missing:
        raise ValueError(f"manifest lacks {len(missing)} image(s) of ARNIQA's order, e.g. {missing[:3]}")
    rows_in_order = row_of.loc[list(order)].to_numpy()
    splits = []
    for k in range(arrays["train"].shape[0]):
        parts = {p: rows_in_order[arrays[p][k][arrays[p][k] >= 0]] for p in PARTS}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if np.intersect1d(parts[a], parts[b]).size:
                raise ValueError(f"{folder}: split {k} puts the same image(s) in {a} and {b}")
        splits.append(Split(train=parts["train"], val=parts["val"], test=parts["test"], seed=None))
    return splits
