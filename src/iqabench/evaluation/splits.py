"""Train / val / test splits that never share a content between parts.

On synthetic sets the distorted versions of one reference image look alike, so a
split that puts some in train and others in test leaks the content and inflates
every correlation; the field splits by reference image (LIVE 80/20 by content,
repeated 10 times). On authentic sets each image is its own content.

Splits depend only on the content ids and the seed, never on the model, so every
model sees identical splits and per-split results can be compared pairwise.
Fractions are fractions of *contents*, as in the papers; image counts follow
closely when contents have similar numbers of images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Row indices (into the manifest / feature matrix) of each part, and the seed that drew them.

    ``seed`` is None for a dataset's official split.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int | None

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def random_splits(content_ids, n_splits: int = 10, test_frac: float = 0.2, val_frac: float = 0.0,
                  seed: int = 0) -> list[Split]:
    """``n_splits`` content-disjoint random splits; split ``i`` is drawn from seed ``seed + i``.

    Seeding each split on its own means split 3 of a 10-split run equals split 3
    of a 5-split run, so a shorter run is a prefix of a longer one.
    """
    content_ids = pd.Series(np.asarray(content_ids).ravel()).astype(str).to_numpy()
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits}")
    if not (0.0 < test_frac < 1.0 and 0.0 <= val_frac < 1.0 and test_frac + val_frac < 1.0):
        raise ValueError(f"need 0 < test_frac < 1, 0 <= val_frac < 1 and test_frac + val_frac < 1; "
                         f"got test_frac={test_frac}, val_frac={val_frac}")
    # Sorted unique ids make the draw independent of the manifest's row order.
    contents, row_content = np.unique(content_ids, return_inverse=True)
    n_contents = len(contents)
    n_test = max(1, int(round(test_frac * n_contents)))
    n_val = max(1, int(round(val_frac * n_contents))) if val_frac > 0 else 0
    if n_test + n_val >= n_contents:
        raise ValueError(f"{n_contents} distinct content ids cannot give {n_test} test and {n_val} val "
                         "contents and still leave some to train on; use smaller fractions or more contents")
    splits = []
    for i in range(n_splits):
        split_seed = seed + i
        order = np.random.default_rng(split_seed).permutation(n_contents)
        part = np.zeros(n_contents, dtype=np.int8)  # 0 train, 1 val, 2 test
        part[order[:n_test]] = 2
        part[order[n_test:n_test + n_val]] = 1
        row_part = part[row_content]
        splits.append(Split(train=np.flatnonzero(row_part == 0), val=np.flatnonzero(row_part == 1),
                            test=np.flatnonzero(row_part == 2), seed=split_seed))
    return splits


def official_split(split_column, where: str = "split column") -> Split:
    """The dataset's own train / val / test assignment (KonIQ-10k, FLIVE) as one :class:`Split`.

    Rows marked "" belong to no part and are left out.
    """
    labels = pd.Series(split_column).fillna("").astype(str).str.strip().str.lower().to_numpy()
    unknown = sorted(set(labels) - {"", "train", "val", "test"})
    if unknown:
        raise ValueError(f"{where}: unknown split value(s) {unknown}; use train, val, test or empty")
    split = Split(train=np.flatnonzero(labels == "train"), val=np.flatnonzero(labels == "val"),
                  test=np.flatnonzero(labels == "test"), seed=None)
    if len(split.train) == 0 or len(split.test) == 0:
        raise ValueError(f"{where}: an official split needs rows marked 'train' and 'test', "
                         f"found {split.sizes}; this dataset has no official split, use random splits")
    return split


def has_official_split(split_column) -> bool:
    labels = set(pd.Series(split_column).fillna("").astype(str).str.strip().str.lower())
    return {"train", "test"} <= labels
