import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge

from iqabench import manifest
from iqabench.evaluation.protocol import (PER_SPLIT_COLUMNS, cross_dataset, fixed_splits, run_splits, score_run,
                                          summarise)


def synthetic_set(n_refs=20, per_ref=6, d=16, noise=0.3, seed=0, name="toy"):
    """Features that carry quality linearly plus noise; ``score`` from the manifest schema."""
    rng = np.random.default_rng(seed)
    n = n_refs * per_ref
    quality = rng.uniform(0, 1, n)
    direction = rng.normal(size=d)
    features = np.outer(quality, direction) + rng.normal(0, noise, (n, d))
    frame = manifest.make(name, [f"img{i}.png" for i in range(n)], quality * 4 + 1, score_type="MOS", lo=1, hi=5,
                          higher_is_better=True, score_source="test",
                          content_id=[f"ref{i // per_ref}" for i in range(n)])
    return features, frame


def test_per_split_rows_match_sklearn_and_scipy_on_the_same_split():
    features, frame = synthetic_set()
    table = score_run(run_splits(features, frame, n_splits=4, test_frac=0.2, seed=3, alphas=[0.1]), logistic="none")
    assert list(table.columns) == list(PER_SPLIT_COLUMNS)
    assert table["split"].tolist() == [0, 1, 2, 3] and table["seed"].tolist() == [3, 4, 5, 6]
    assert (table["n_test"] == 4 * 6).all() and (table["alpha"] == 0.1).all()
    run = run_splits(features, frame, n_splits=4, test_frac=0.2, seed=3, alphas=[0.1])
    split = run.splits[1]
    y = frame["score"].to_numpy()
    pred = Ridge(alpha=0.1).fit(features[split.train], y[split.train]).predict(features[split.test])
    assert table.loc[1, "srcc"] == pytest.approx(stats.spearmanr(pred, y[split.test]).statistic, abs=1e-9)
    assert table.loc[1, "plcc"] == pytest.approx(stats.pearsonr(pred, y[split.test]).statistic, abs=1e-9)


@pytest.mark.filterwarnings("ignore:5-parameter logistic fit failed")  # noise has no curve to fit
def test_informative_features_score_high_and_noise_features_do_not():
    features, frame = synthetic_set(noise=0.2)
    good = summarise(score_run(run_splits(features, frame, n_splits=5, alphas=[0.1])))
    noise = np.random.default_rng(9).normal(size=features.shape)
    bad = summarise(score_run(run_splits(noise, frame, n_splits=5, alphas=[0.1])))
    assert good["srcc"]["median"] > 0.9
    assert abs(bad["srcc"]["median"]) < 0.4


def test_alpha_is_chosen_on_validation_from_the_grid():
    features, frame = synthetic_set(n_refs=30, d=60, noise=1.0)
    grid = np.geomspace(1e-3, 1e3, 7)
    table = score_run(run_splits(features, frame, n_splits=3, val_frac=0.2, alphas=grid))
    assert table["alpha"].nunique() == 1 and table["alpha"].iloc[0] in grid  # ARNIQA: one alpha per dataset
    assert (table["n_val"] > 0).all()
    per_split = run_splits(features, frame, n_splits=3, val_frac=0.2, alphas=grid, alpha_rule="per_split")
    assert set(per_split.alphas) <= set(grid)
    with pytest.raises(ValueError, match="val_frac > 0"):
        run_splits(features, frame, n_splits=2, val_frac=0.0, alphas=grid)


def test_official_split_runs_as_one_split():
    features, frame = synthetic_set()
    assert fixed_splits("toy", frame, official=True) == ("random", None)  # no split marked: random splits
    frame["split"] = np.where(np.arange(len(frame)) < 90, "train", "test")
    assert fixed_splits("toy", frame) == ("random", None)  # marked, but evaluate.official_splits is off
    kind, splits = fixed_splits("toy", frame, official=True)
    run = run_splits(features, frame, alphas=[0.1], splits=splits)
    assert kind == "official" and len(run.splits) == 1 and len(run.test_pred[0]) == len(frame) - 90
    table = score_run(run)
    assert len(table) == 1 and table.loc[0, "n_train"] == 90 and table.loc[0, "n_test"] == 30
    assert pd.isna(table.loc[0, "seed"])


def test_summarise_gives_median_and_spread():
    per_split = pd.DataFrame({m: [0.1, 0.2, 0.3, 0.4, 0.9] for m in ("srcc", "krcc", "plcc", "plcc_raw", "rmse")})
    summary = summarise(per_split)
    assert summary["srcc"] == {"median": 0.3, "q25": 0.2, "q75": 0.4, "min": 0.1, "max": 0.9, "mean": pytest.approx(0.38)}
    assert summary["n_splits"] == 5


def test_cross_dataset_trains_on_all_of_a_and_tests_on_all_of_b():
    features_a, frame_a = synthetic_set(seed=0, name="a")
    features_b, frame_b = synthetic_set(n_refs=10, seed=0, name="b")
    # Same feature space: B is another draw of the same generator.
    features_b = features_a[: len(frame_b)] + np.random.default_rng(5).normal(0, 0.05, (len(frame_b), 16))
    frame_b["score"] = frame_a["score"].to_numpy()[: len(frame_b)]
    result = cross_dataset(features_a, frame_a, features_b, frame_b, alpha=0.1, logistic="5pl")
    assert result["n_train"] == len(frame_a) and result["n_test"] == len(frame_b)
    pred = Ridge(alpha=0.1).fit(features_a, frame_a["score"]).predict(features_b)
    assert result["srcc"] == pytest.approx(stats.spearmanr(pred, frame_b["score"]).statistic, abs=1e-9)
    assert result["plcc"] >= result["plcc_raw"] - 1e-6  # the logistic is fitted on B, so it can only help
    with pytest.raises(ValueError, match="same model and layer"):
        cross_dataset(features_a, frame_a, features_b[:, :8], frame_b)


def test_feature_and_manifest_mismatch_is_named():
    features, frame = synthetic_set()
    with pytest.raises(ValueError, match="manifest has 120 rows"):
        run_splits(features[:100], frame, n_splits=2)
    with pytest.raises(ValueError, match="no 'content_id' column"):
        run_splits(features, frame.drop(columns="content_id"), n_splits=2)


def test_the_headline_is_each_metrics_own_median_not_the_median_splits_metrics():
    # SRCC's median split (index 2) is not PLCC's (index 0): each metric takes its own median (ARNIQA's
    # test.py: np.median of the SROCC list and of the PLCC list separately).
    per_split = pd.DataFrame({"srcc": [0.1, 0.2, 0.3, 0.4, 0.5], "plcc": [0.5, 0.1, 0.2, 0.9, 0.8],
                              "krcc": [0.3, 0.3, 0.3, 0.3, 0.3], "plcc_raw": [0.0, 1.0, 0.2, 0.4, 0.6],
                              "rmse": [0.9, 0.1, 0.5, 0.2, 0.3]})
    summary = summarise(per_split)
    assert summary["srcc"]["median"] == 0.3 and summary["plcc"]["median"] == 0.5
    assert summary["plcc_raw"]["median"] == 0.4 and summary["rmse"]["median"] == 0.3
    ten = pd.concat([per_split, per_split.iloc[::-1] + 0.01], ignore_index=True)
    assert summarise(ten)["srcc"]["median"] == pytest.approx(np.median(ten["srcc"]))  # even count: mean of the middle two


@pytest.mark.parametrize("standardize", [False, True])
def test_test_labels_and_other_test_rows_never_reach_a_splits_fit_or_alpha(standardize):
    # Per split, the ridge (and the scaler with standardize) is fitted on train only and alpha is
    # chosen on val only: rewriting the test images' scores, or the features of other test images,
    # changes neither the chosen alpha nor any prediction of that split.
    features, frame = synthetic_set(n_refs=30, d=40, noise=0.5)
    grid = np.geomspace(1e-3, 1e3, 9)
    kw = dict(n_splits=3, val_frac=0.2, alphas=grid, standardize=standardize, alpha_rule="per_split")
    run = run_splits(features, frame, **kw)
    split = run.splits[0]
    assert not set(split.train) & set(split.test) and not set(split.val) & set(split.test)
    changed = frame.copy()
    changed.loc[split.test, "score"] = np.random.default_rng(1).uniform(0, 1, len(split.test))
    other = features.copy()
    other[split.test[1:]] = np.random.default_rng(2).normal(0, 100, (len(split.test) - 1, features.shape[1]))
    for feats, manifest_ in ((features, changed), (other, frame)):
        again = run_splits(feats, manifest_, splits=[split], **kw)
        assert again.alphas[0] == run.alphas[0]
        if feats is features:
            np.testing.assert_allclose(again.test_pred[0], run.test_pred[0], rtol=1e-9, atol=1e-12)
        else:  # only the first test image kept its features
            assert again.test_pred[0][0] == pytest.approx(run.test_pred[0][0], rel=1e-9, abs=1e-12)


def test_dmos_is_flipped_so_a_dmos_set_scores_like_its_mos_twin():
    # The manifest maps DMOS to higher-is-better, so SRCC stays positive and a DMOS set
    # gives the same numbers as the same ratings stored as MOS (RMSE on the unit scale).
    features, frame = synthetic_set()
    quality = frame["score"].to_numpy()
    dmos = manifest.make("toy-dmos", frame["image"], 100 * (1 - quality), score_type="DMOS", lo=0, hi=100,
                         higher_is_better=False, score_source="test", content_id=frame["content_id"].tolist())
    as_mos = score_run(run_splits(features, frame, n_splits=3, alphas=[0.1]))
    as_dmos = score_run(run_splits(features, dmos, n_splits=3, alphas=[0.1]))
    assert (as_dmos["srcc"] > 0.8).all()
    for metric in ("srcc", "krcc", "plcc_raw"):
        np.testing.assert_allclose(as_dmos[metric], as_mos[metric], atol=1e-9)
    # The two score columns differ by rounding (1e-16), yet the 5PL can move by ~1e-4: on 24 test
    # images its best fit is a steep step whose slope and place the data barely pin down.
    for metric in ("plcc", "rmse"):
        np.testing.assert_allclose(as_dmos[metric], as_mos[metric], atol=1e-3)
    # Across sets, a MOS-trained regressor ranks a DMOS set the right way round.
    assert cross_dataset(features, frame, features, dmos, alpha=0.1)["srcc"] > 0.8


def test_cross_dataset_predictions_of_b_depend_on_a_only():
    # Scaler and ridge are fitted on A; B's rows are only predicted, each on its own.
    features_a, frame_a = synthetic_set(seed=0, name="a")
    features_b, frame_b = synthetic_set(seed=1, name="b")
    from iqabench.evaluation.ridge import ridge_path
    (full,) = ridge_path(features_a, frame_a["score"], [features_b], [0.1], standardize=True)
    (part,) = ridge_path(features_a, frame_a["score"], [features_b[:7] * 1.0], [0.1], standardize=True)
    np.testing.assert_allclose(part[0], full[0][:7], rtol=1e-9)
    result = cross_dataset(features_a, frame_a, features_b, frame_b, alpha=0.1, standardize=True, logistic="none")
    assert result["srcc"] == pytest.approx(stats.spearmanr(full[0], frame_b["score"]).statistic, abs=1e-9)
    assert result["n_train"] == len(frame_a) and result["n_test"] == len(frame_b)


def test_a_test_set_of_one_score_names_the_dataset_row_and_split():
    # "error: evaluate: mos is constant (np.float64(0.0)) over 3 images": no dataset, model or split, a numpy repr.
    from iqabench.evaluation.protocol import run_splits, score_run

    frame = pd.DataFrame({"score": [0.0] * 10 + [1.0, 0.5], "content_id": [str(i) for i in range(12)]})
    features = np.arange(24, dtype=float).reshape(12, 2)
    run = run_splits(features, frame, n_splits=3, test_frac=0.25, seed=0)
    with pytest.raises(ValueError, match=r"^dataset 'd', model 'm', split \d: mos is constant \(0\) over 3 images; "
                                         r"a test set needs differing scores"):
        score_run(run, where="dataset 'd', model 'm'")
