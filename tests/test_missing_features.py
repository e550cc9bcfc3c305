"""Images on which a row is undefined: NaN features, dropped per model by the protocol and counted."""
import numpy as np
import pytest
import torch

from iqabench import features, images, manifest, study
from iqabench.evaluation import significance
from iqabench.evaluation.protocol import cross_dataset_many, run_splits, score_run

from test_evaluation_protocol import synthetic_set


def test_nan_rows_are_dropped_for_that_model_only_on_the_same_splits():
    X, frame = synthetic_set(n_refs=20, per_ref=6)
    holes = X.copy()
    dropped = [3, 40, 77]
    holes[dropped, 2] = np.nan
    full = run_splits(X, frame, n_splits=4, seed=1)
    part = run_splits(holes, frame, n_splits=4, seed=1)
    assert full.n_missing == 0 and part.n_missing == 3
    for a, b in zip(full.splits, part.splits):
        # The same splits, less the undefined images.
        assert set(b.test) == set(a.test) - set(dropped) and set(b.train) == set(a.train) - set(dropped)
    table = score_run(part)
    assert (table["n_missing"] == 3).all() and np.isfinite(table["srcc"]).all()
    assert (table["n_test"] + table["n_train"] == len(frame) - 3).all()


def test_too_many_undefined_images_stop_with_a_message():
    X, frame = synthetic_set(n_refs=10, per_ref=2)
    X[:18] = np.nan
    with pytest.raises(ValueError, match=r"after dropping the 18 image\(s\) with undefined features"):
        run_splits(X, frame, n_splits=2, seed=0)


def test_cross_dataset_drops_and_counts_on_both_sides():
    Xa, a = synthetic_set(seed=0, name="a")
    Xb, b = synthetic_set(seed=1, name="b")
    Xa[[0, 1]] = np.nan
    Xb[5] = np.inf
    (result,) = cross_dataset_many(Xa, a, [(Xb, b)])
    assert result["n_missing"] == 3 and result["n_train"] == len(a) - 2 and result["n_test"] == len(b) - 1
    assert np.isfinite(result["srcc"])


def test_study_reports_n_missing_per_model_and_dataset():
    rng = np.random.default_rng(0)
    frame = manifest.make("a", [f"{i}.png" for i in range(80)], rng.uniform(0, 100, 80), score_type="MOS", lo=0, hi=100,
                          higher_is_better=True, score_source="made up", content_id=[str(i // 4) for i in range(80)])
    good = np.c_[frame["score"].to_numpy(), rng.normal(size=(80, 3))]
    flawed = good.copy()
    flawed[[7, 8]] = np.nan
    cfg = dict(models=["good", "flawed"], n_splits=4, test_frac=0.2, val_frac=0.0, seed=0, alphas=[0.1],
               standardize=False, logistic="none")
    result = study.run({"a": {"good": good, "flawed": flawed}}, {"a": frame}, cfg)
    n_missing = result.within.set_index("model")["n_missing"]
    assert n_missing["good"] == 0 and n_missing["flawed"] == 2
    assert not result.predictions.query("model == 'flawed'")["image"].isin(["7.png", "8.png"]).any()


def test_a_row_that_drops_its_hardest_images_is_compared_on_the_images_both_define():
    # B is A itself, undefined on the 20 % of images A predicts worst: the same predictions wherever both
    # are defined, so the paired comparison must find no difference (split SRCCs over different images
    # made B "significantly better").
    rng = np.random.default_rng(3)
    n = 200
    frame = manifest.make("a", [f"{i}.png" for i in range(n)], rng.uniform(0, 1, n), score_type="MOS", lo=0, hi=1,
                          higher_is_better=True, score_source="made up", content_id=[str(i // 4) for i in range(n)])
    quality = frame["score"].to_numpy()
    error = rng.normal(0, 0.25, n)
    a = np.c_[quality + error, rng.normal(size=(n, 2))]
    b = a.copy()
    b[np.argsort(-np.abs(error))[: n // 5]] = np.nan
    cfg = dict(models=["a", "b"], n_splits=10, test_frac=0.2, val_frac=0.0, seed=0, alphas=[1e-3],
               standardize=False, logistic="none")
    result = study.run({"a": {"a": a, "b": b}}, {"a": frame}, cfg)
    within = result.within.set_index("model")["srcc"]
    assert within["b"] > within["a"] + 0.05  # on its own images B looks better, as the protocol reports it
    (row,) = result.significance.to_dict("records")
    assert abs(row["diff"]) < 0.02 and not row["significant"], row


def test_common_test_pairs_the_test_images_both_runs_define():
    X, frame = synthetic_set(n_refs=20, per_ref=6)
    holes = X.copy()
    holes[[3, 40, 77]] = np.nan
    full, part = run_splits(X, frame, n_splits=4, seed=1), run_splits(holes, frame, n_splits=4, seed=1)
    paired = significance.common_test(full, part)
    for (mos, pred_a, pred_b, _), split in zip(paired, part.splits):
        assert mos.size == pred_a.size == pred_b.size == len(split.test)


def _frame(tmp_path, tiles):
    paths = [images.save_png(t, tmp_path / f"{i}.png") for i, t in enumerate(tiles)]
    return manifest.validate(manifest.make("d", paths, np.linspace(1, 5, len(paths)), score_type="MOS", lo=1, hi=5,
                                           higher_is_better=True, score_source="test"))


def test_extract_keeps_undefined_images_as_nan_and_refuses_all_undefined(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tiles = [torch.rand(3, 16, 16, generator=gen) for _ in range(3)] + [torch.full((3, 16, 16), 0.5)]
    frame = _frame(tmp_path, tiles)

    def std_or_nan(batch):  # the contract: NaN where the statistic does not exist
        sd = batch.flatten(1).std(dim=1, keepdim=True)
        return torch.where(sd > 0, sd, torch.full_like(sd, float("nan")))

    values = features.extract(std_or_nan, frame, batch_size=2, show_progress=False)
    assert features.undefined_images(values).tolist() == [False, False, False, True]
    flat = frame.iloc[[3]].reset_index(drop=True)
    with pytest.raises(ValueError, match="undefined \\(NaN\\) on every one of the 1 images"):
        features.extract(std_or_nan, flat, show_progress=False)
