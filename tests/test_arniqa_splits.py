"""ARNIQA's official split files (10 x n image indices, -1 padded) map onto a manifest by image name."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iqabench.evaluation import run_splits
from iqabench.evaluation.arniqa_splits import read_arniqa_splits


def _write(folder, parts):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        width = max(len(r) for r in rows)
        np.save(folder / f"{name}.npy", np.array([list(r) + [-1] * (width - len(r)) for r in rows], dtype=np.int64))


def test_indices_in_the_score_files_order_become_rows_of_a_reordered_manifest(tmp_path):
    order = [f"img{i:02d}.bmp" for i in range(20)]          # ARNIQA's score-file order
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"image": [f"data/x/{n}" for n in rng.permutation(order)]})
    perms = [rng.permutation(20) for _ in range(10)]
    _write(tmp_path, {"train": [p[:12] for p in perms], "val": [p[12:15] for p in perms],
                      "test": [p[15:] if k % 2 else p[16:] for k, p in enumerate(perms)]})  # ragged: -1 padding
    splits = read_arniqa_splits(tmp_path, order, manifest["image"])
    assert len(splits) == 10 and splits[0].sizes == {"train": 12, "val": 3, "test": 4}
    names = manifest["image"].str.rsplit("/", n=1).str[-1].to_numpy()
    assert list(names[splits[1].test]) == [order[i] for i in perms[1][15:]]
    scores = pd.DataFrame({"score": np.linspace(0, 1, 20), "content_id": names})
    run = run_splits(scores["score"].to_numpy()[:, None], scores, alphas=[0.1, 1.0], splits=splits)
    assert len(run.alphas) == 10


def test_bad_split_files_are_named_with_the_problem(tmp_path):
    order = [f"{i}.png" for i in range(6)]
    images = pd.Series(order)
    with pytest.raises(FileNotFoundError, match="train.npy does not exist"):
        read_arniqa_splits(tmp_path, order, images)
    _write(tmp_path, {"train": [[0, 1, 2]], "val": [[3]], "test": [[2, 5]]})
    with pytest.raises(ValueError, match="split 0 puts the same image.*train and test"):
        read_arniqa_splits(tmp_path, order, images)
    _write(tmp_path, {"test": [[4, 9]]})
    with pytest.raises(ValueError, match=r"test\.npy: indices span 4\.\.9 but the score file order has 6"):
        read_arniqa_splits(tmp_path, order, images)
    _write(tmp_path, {"test": [[4, 5]]})
    with pytest.raises(ValueError, match="manifest lacks 1 image"):
        read_arniqa_splits(tmp_path, order, images[:5])
