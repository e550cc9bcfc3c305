import numpy as np
import pytest

from iqabench.evaluation.splits import has_official_split, official_split, random_splits


def synthetic_ids(n_refs=30, per_ref=12):
    return np.repeat([f"ref{i:02d}" for i in range(n_refs)], per_ref)


def test_splits_are_content_disjoint_and_cover_every_image():
    ids = synthetic_ids()
    for split in random_splits(ids, n_splits=5, test_frac=0.2, val_frac=0.1, seed=7):
        parts = [set(ids[split.train]), set(ids[split.val]), set(ids[split.test])]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        rows = np.concatenate([split.train, split.val, split.test])
        assert sorted(rows) == list(range(len(ids)))


def test_sizes_follow_fractions_of_contents():
    ids = synthetic_ids(n_refs=30)
    split = random_splits(ids, n_splits=1, test_frac=0.2, val_frac=0.1)[0]
    assert split.sizes == {"train": 21 * 12, "val": 3 * 12, "test": 6 * 12}


def test_same_seed_same_splits_and_row_order_does_not_matter():
    ids = synthetic_ids()
    a = random_splits(ids, n_splits=3, seed=4)
    b = random_splits(ids, n_splits=3, seed=4)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b))
    assert [s.seed for s in a] == [4, 5, 6]
    # Same contents in another row order: the same images land in test.
    perm = np.random.default_rng(0).permutation(len(ids))
    shuffled = random_splits(ids[perm], n_splits=3, seed=4)
    for x, y in zip(a, shuffled):
        assert set(ids[x.test]) == set(ids[perm][y.test])


def test_different_seeds_differ_and_shorter_run_is_a_prefix():
    ids = synthetic_ids()
    ten = random_splits(ids, n_splits=10, seed=0)
    assert len({tuple(s.test) for s in ten}) == 10
    three = random_splits(ids, n_splits=3, seed=0)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(three, ten))


def test_authentic_set_each_image_is_own_content():
    ids = [f"img{i}" for i in range(100)]
    split = random_splits(ids, n_splits=1, test_frac=0.25)[0]
    assert split.sizes == {"train": 75, "val": 0, "test": 25}


def test_bad_fractions_and_too_few_contents_raise():
    with pytest.raises(ValueError, match="test_frac"):
        random_splits(synthetic_ids(), test_frac=0.7, val_frac=0.4)
    with pytest.raises(ValueError, match="distinct content ids"):
        random_splits(["a", "a", "b"], test_frac=0.5, val_frac=0.4)


def test_official_split_uses_the_column():
    column = ["train", "train", "val", "test", "", "test"]
    split = official_split(column)
    assert split.train.tolist() == [0, 1] and split.val.tolist() == [2] and split.test.tolist() == [3, 5]
    assert split.seed is None
    assert has_official_split(column) and not has_official_split(["", ""])
    with pytest.raises(ValueError, match="unknown split value"):
        official_split(["train", "testing"])
    with pytest.raises(ValueError, match="no official split"):
        official_split(["", "", ""])


def test_an_authentic_manifest_without_content_ids_makes_each_image_its_own_content():
    from iqabench import manifest

    images = [f"photos/{i:04d}.jpg" for i in range(40)]
    frame = manifest.make("toy-authentic", images, np.linspace(1, 5, 40), score_type="MOS", lo=1, hi=5,
                          higher_is_better=True, score_source="test")
    assert frame["content_id"].tolist() == [f"{i:04d}" for i in range(40)]
    for split in random_splits(frame["content_id"].to_numpy(), n_splits=3, test_frac=0.2, val_frac=0.1):
        assert split.sizes == {"train": 28, "val": 4, "test": 8}
