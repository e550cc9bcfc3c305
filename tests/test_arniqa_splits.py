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


def _kadid(n_refs=6, per_ref=4):
    """A KADID-10k manifest in dmos.csv's order (reference by reference), as prepare writes it."""
    from iqabench import manifest

    names = [f"I{r:02d}_01_{k:02d}.png" for r in range(1, n_refs + 1) for k in range(1, per_ref + 1)]
    return manifest.make("kadid10k", [f"/d/kadid10k/images/{n}" for n in names], np.linspace(1, 5, len(names)),
                         score_type="MOS", lo=1, hi=5, higher_is_better=True, score_source="test",
                         content_id=[n[:3] for n in names])


def _reference_disjoint(folder, n_splits=3, per_ref=4, n_refs=6):
    rows = {p: [] for p in ("train", "val", "test")}
    for k in range(n_splits):
        refs = np.roll(np.arange(n_refs), k)
        for part, chosen in (("train", refs[:4]), ("val", refs[4:5]), ("test", refs[5:])):
            rows[part].append([r * per_ref + i for r in chosen for i in range(per_ref)])
    _write(folder, rows)


def test_the_evaluate_stage_reads_arniqa_s_files_for_the_sets_it_covers(tmp_path):
    from iqabench import study
    from iqabench.evaluation.protocol import fixed_splits

    frame = _kadid()
    _reference_disjoint(tmp_path / "KADID10K" / "splits")
    kind, splits = fixed_splits("kadid10k", frame, arniqa_splits=str(tmp_path))
    assert kind == "arniqa" and len(splits) == 3 and splits[0].sizes == {"train": 16, "val": 4, "test": 4}
    assert fixed_splits("koniq10k", frame, arniqa_splits=str(tmp_path)) == ("random", None)  # no loader: not read
    np.save(tmp_path / "KADID10K" / "splits" / "val.npy", np.array([["a"]]))  # not ARNIQA's integer indices
    with pytest.raises(ValueError, match=r"^evaluate.arniqa_splits: .*val.npy: expected a 2-D integer array"):
        fixed_splits("kadid10k", frame, arniqa_splits=str(tmp_path))
    _reference_disjoint(tmp_path / "KADID10K" / "splits")
    features = {"kadid10k": {"m": frame["score"].to_numpy()[:, None] + np.linspace(0, 0.01, len(frame))[:, None]}}
    cfg = dict(models=["m"], n_splits=10, test_frac=0.2, val_frac=0.0, seed=0, alphas=[0.1], standardize=False,
               logistic="none", arniqa_splits=str(tmp_path))
    within = study.run(features, {"kadid10k": frame}, cfg).within
    assert within[["splits", "n_splits"]].values.tolist() == [["arniqa", 3]]  # the files' count, not n_splits


def test_a_manifest_out_of_arniqa_s_order_is_refused_not_evaluated_on_leaked_content(tmp_path):
    from iqabench.evaluation.arniqa_splits import for_dataset

    _reference_disjoint(tmp_path / "KADID10K" / "splits")
    shuffled = _kadid().sample(frac=1, random_state=0).reset_index(drop=True)  # not dmos.csv's order
    with pytest.raises(ValueError, match=r"kadid10k: ARNIQA's split 0 .* puts reference\(s\) .* on both sides.*"
                                         r"not in the order the indices count \(the published score file\)"):
        for_dataset("kadid10k", shuffled, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tid2013: .*TID2013/splits does not exist.*miccunifi/ARNIQA"):
        for_dataset("tid2013", shuffled, tmp_path)


def test_live_and_csiq_are_indexed_through_arniqa_s_lists(tmp_path):
    from iqabench.evaluation.arniqa_splits import for_dataset

    order = [f"{folder}/img{i}.bmp" for folder in ("jp2k", "jpeg", "wn") for i in (1, 2)]
    refs = {"jp2k": "a", "jpeg": "b", "wn": "c"}
    frame = pd.DataFrame({"image": [f"/d/live/{n}" for n in reversed(order)],
                          "content_id": [refs[n.split("/")[0]] for n in reversed(order)]})
    _write(tmp_path / "LIVE" / "splits", {"train": [[0, 1, 2, 3]], "val": [[4]], "test": [[5]]})
    with pytest.raises(FileNotFoundError, match=r"live: ARNIQA's LIVE indices count the rows of LIVE.txt, which is "
                                                r"not at .*LIVE.txt; save it there from https://github.com/icbcbicc"):
        for_dataset("live", frame, tmp_path)
    # icbcbicc/IQA-Dataset's LIVE.txt, which ARNIQA's README links: dis_img_path with the LIVE/ folder first.
    def live_txt(names):
        pd.DataFrame({"dis_img_path": [f"LIVE/{n}" for n in names], "dis_type": "x", "ref_img_path": "r",
                      "score": 1.0}).to_csv(tmp_path / "LIVE" / "LIVE.txt", index=False)

    live_txt(order)
    (split,) = for_dataset("live", frame, tmp_path)
    assert list(frame["image"][split.test]) == ["/d/live/wn/img2.bmp"]
    assert sorted(frame["image"][split.train]) == [f"/d/live/{n}" for n in order[:4]]
    live_txt([order[0], order[4], *order[2:4], order[1], order[5]])  # another copy's order: references mix
    with pytest.raises(ValueError, match=r"live: ARNIQA's split 0 .* reference\(s\) \['a', 'c'\] on both sides.*LIVE.txt"):
        for_dataset("live", frame, tmp_path)
    (tmp_path / "CSIQ" / "splits").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"csiq: .*rows of CSIQ.txt.*IQA-Dataset/blob/master/csv/CSIQ.txt"):
        for_dataset("csiq", frame, tmp_path)


def test_mixed_training_takes_split_s_of_the_same_files(tmp_path):
    from iqabench import mixed

    frame = _kadid()
    _reference_disjoint(tmp_path / "KADID10K" / "splits")
    fixed = mixed.dataset_splits({"kadid10k": frame}, n_splits=2, test_frac=0.2, arniqa_splits=str(tmp_path))
    assert [list(s.test) for s in fixed["kadid10k"]] == [list(range(20, 24)), list(range(16, 20))]
    with pytest.raises(mixed.MixedInputError, match=r"evaluate.arniqa_splits: tid2013: .*TID2013/splits does not"):
        mixed.dataset_splits({"tid2013": frame}, n_splits=2, test_frac=0.2, arniqa_splits=str(tmp_path))
    with pytest.raises(mixed.MixedInputError, match=r"kadid10k: ARNIQA's split files hold 3 splits, fewer than "
                                                    r"evaluate.n_splits = 5; lower n_splits to 3"):
        mixed.dataset_splits({"kadid10k": frame}, n_splits=5, test_frac=0.2, arniqa_splits=str(tmp_path))


def test_params_refuse_a_split_folder_that_is_not_there(tmp_path):
    from iqabench import params

    with pytest.raises(params.ParamsError, match=r"evaluate.arniqa_splits = '.*nowhere' is not a folder"):
        params.validate({"seed": 0, "datasets": ["synthetic-single"], "models": ["brisque"],
                         "evaluate": {"arniqa_splits": str(tmp_path / "nowhere")}})
    _reference_disjoint(tmp_path / "KADID10K" / "splits")
    (tmp_path / "LIVE" / "splits").mkdir(parents=True)
    with pytest.raises(params.ParamsError, match=r"evaluate.arniqa_splits: .*LIVE/splits/train.npy does not exist "
                                                 r"\(4 file\(s\) missing\)"):
        params.validate({"seed": 0, "datasets": ["kadid10k", "live", "koniq10k"], "models": ["brisque"],
                         "evaluate": {"arniqa_splits": str(tmp_path)}})


def test_damaged_or_odd_split_files_are_named_not_half_read(tmp_path):
    from iqabench.evaluation.arniqa_splits import for_dataset

    frame = _kadid()
    folder = tmp_path / "KADID10K" / "splits"
    _reference_disjoint(folder)
    train = np.load(folder / "train.npy")
    train[0, 1] = train[0, 0]  # image 0 trained on twice, image 1 never: silently, before
    np.save(folder / "train.npy", train)
    with pytest.raises(ValueError, match=r"train.npy: split 0 lists an image twice; replace it with ARNIQA's file"):
        for_dataset("kadid10k", frame, tmp_path)
    (folder / "train.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"train.npy: not a NumPy file of split indices \(.*\); replace it"):
        for_dataset("kadid10k", frame, tmp_path)
    np.save(folder / "train.npy", np.zeros((3, 0), dtype=np.int64))
    with pytest.raises(ValueError, match=r"train.npy: holds no indices"):
        for_dataset("kadid10k", frame, tmp_path)
    _reference_disjoint(folder)
    with pytest.raises(ValueError, match=r"indices span 0..23 but the manifest \(a partial copy of the set\?\) has 20"):
        for_dataset("kadid10k", frame.iloc[:20], tmp_path)


def test_a_live_list_with_windows_paths_or_a_repeated_row(tmp_path):
    from iqabench.evaluation.arniqa_splits import for_dataset

    order = ["jp2k/img1.bmp", "jp2k/img2.bmp", "wn/img1.bmp", "wn/img2.bmp"]
    frame = pd.DataFrame({"image": [f"/d/live/databaserelease2/{n}" for n in order], "content_id": list("aabb")})
    _write(tmp_path / "LIVE" / "splits", {"train": [[0, 1]], "val": [[2]], "test": [[3]]})
    listing = tmp_path / "LIVE" / "LIVE.txt"
    listing.write_text("dis_img_path,score\r\n" + "".join(f"LIVE\\{n.replace('/', chr(92))},1\r\n" for n in order))
    (split,) = for_dataset("live", frame, tmp_path)
    assert list(frame["image"][split.test]) == ["/d/live/databaserelease2/wn/img2.bmp"]
    listing.write_text("dis_img_path,score\nLIVE/jp2k/img1.bmp,1\nLIVE/jp2k/img1.bmp,1\nLIVE/wn/img1.bmp,1\n"
                       "LIVE/wn/img2.bmp,1\n")
    with pytest.raises(ValueError, match=r"names 'jp2k/img1.bmp' twice \(row 3 of its list"):
        for_dataset("live", frame, tmp_path)
    listing.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"LIVE.txt: not readable as ARNIQA's LIVE.txt .*replace it with https://"):
        for_dataset("live", frame, tmp_path)
