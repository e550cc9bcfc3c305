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


def test_flive_one_dimensional_split_files_are_its_one_official_split(tmp_path):
    # datasets/FLIVE/splits/*.npy in miccunifi/ARNIQA are 1-D (train.npy: 30253 indices), and
    # data/dataset_flive.py's get_split_indices returns them whole: one split, not 30253 of one image.
    order = [f"{i}.jpg" for i in range(10)]
    np.save(tmp_path / "train.npy", np.array([0, 2, 4, 6, 8, 9], dtype=np.int64))
    np.save(tmp_path / "val.npy", np.array([1, 3], dtype=np.int64))
    np.save(tmp_path / "test.npy", np.array([5, 7], dtype=np.int64))
    splits = read_arniqa_splits(tmp_path, order, pd.Series(order[::-1]))
    assert len(splits) == 1 and splits[0].sizes == {"train": 6, "val": 2, "test": 2}
    assert sorted(order[::-1][i] for i in splits[0].test) == ["5.jpg", "7.jpg"]
    np.save(tmp_path / "test.npy", np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"test\.npy: expected a 2-D integer array .* FLIVE's 1-D one"):
        read_arniqa_splits(tmp_path, order, pd.Series(order))


def test_lives_repeated_file_names_map_through_their_folders(tmp_path):
    # LIVE.txt's dis_img_path less its first folder (data/dataset_live.py): jp2k/img2.bmp and jpeg/img2.bmp.
    order = ["jp2k/img1.bmp", "jp2k/img2.bmp", "jpeg/img1.bmp", "jpeg/img2.bmp", "wn/img1.bmp", "wn/img2.bmp"]
    images = pd.Series([f"/data/live/databaserelease2/{n}" for n in order[::-1]])
    _write(tmp_path, {"train": [[0, 1, 2]], "val": [[3]], "test": [[4, 5]]})
    (split,) = read_arniqa_splits(tmp_path, order, images)
    assert sorted(images[split.test]) == ["/data/live/databaserelease2/wn/img1.bmp",
                                          "/data/live/databaserelease2/wn/img2.bmp"]
    with pytest.raises(ValueError, match=r"image names repeat \(e\.g\. img\d\.bmp\).*jp2k/img2\.bmp"):
        read_arniqa_splits(tmp_path, [n.split("/")[1] for n in order], images)
