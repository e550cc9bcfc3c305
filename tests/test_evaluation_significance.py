import numpy as np
import pytest
from scipy import stats

from iqabench import manifest
from iqabench.evaluation.protocol import run_splits
from iqabench.evaluation.significance import compare, compare_runs, image_bootstrap


def quality_features(n=120, d=16, seed=0):
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 1, n)
    features = np.outer(quality, rng.normal(size=d)) + rng.normal(0, 0.2, (n, d))
    frame = manifest.make("toy", [f"img{i}.png" for i in range(n)], quality, kind="MOS", lo=0, hi=1,
                          higher_is_better=True, score_source="test", content_id=[f"ref{i // 6}" for i in range(n)])
    return features, frame


def test_consistent_gain_over_ten_splits_is_significant():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.80, 0.85, 10)
    a = b + 0.03 + rng.normal(0, 0.005, 10)
    result = compare(a, b)
    assert result["diff"] == pytest.approx(np.mean(a - b))
    assert result["p"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert result["lo"] > 0 and result["significant"]


def test_noise_sized_difference_is_not_significant():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.80, 0.85, 10)
    a = b + rng.normal(0, 0.01, 10)
    result = compare(a, b)
    assert result["lo"] < 0 < result["hi"] and not result["significant"]


def test_identical_models_tie():
    result = compare([0.8, 0.9, 0.85], [0.8, 0.9, 0.85])
    assert result == {**result, "diff": 0.0, "lo": 0.0, "hi": 0.0, "p": 1.0, "significant": False}


def test_corrected_t_test_is_wider_than_the_naive_one():
    rng = np.random.default_rng(2)
    d = 0.01 + rng.normal(0, 0.01, 10)
    corrected = compare(d, np.zeros(10), test_train_ratio=0.25)
    naive = stats.ttest_1samp(d, 0.0)
    assert corrected["p"] > naive.pvalue
    se = np.sqrt((1 / 10 + 0.25) * d.var(ddof=1))  # Nadeau & Bengio (2003)
    assert corrected["hi"] - corrected["lo"] == pytest.approx(2 * stats.t.ppf(0.975, 9) * se)


def test_compare_rejects_unpaired_input():
    with pytest.raises(ValueError, match="same splits"):
        compare([0.8, 0.9], [0.8, 0.9, 0.7])


def test_image_bootstrap_separates_a_good_from_a_noisy_predictor():
    rng = np.random.default_rng(3)
    mos = rng.uniform(0, 1, 300)
    good = mos + rng.normal(0, 0.05, 300)
    noisy = mos + rng.normal(0, 0.5, 300)
    result = image_bootstrap(mos, good, noisy, n_boot=300)
    observed = stats.spearmanr(good, mos).statistic - stats.spearmanr(noisy, mos).statistic
    assert result["diff"] == pytest.approx(observed)
    assert 0 < result["lo"] < observed < result["hi"] and result["significant"]
    as_lists = image_bootstrap(mos.tolist(), good.tolist(), noisy.tolist(), n_boot=300)
    assert as_lists == result
    same = image_bootstrap(mos, good, good + 1e-9 * rng.normal(size=300), n_boot=300)
    assert same["lo"] <= 0 <= same["hi"] and not same["significant"]


def test_compare_runs_needs_the_same_splits_and_reports_both_tests():
    features, frame = quality_features()
    noise = np.random.default_rng(4).normal(size=features.shape)
    run_good = run_splits(features, frame, n_splits=4, alphas=[0.1])
    run_bad = run_splits(noise, frame, n_splits=4, alphas=[0.1])
    result = compare_runs(run_good, run_bad, n_boot=200)
    assert result["splits"]["diff"] > 0.5 and result["images"]["significant"]
    other = run_splits(noise, frame, n_splits=4, seed=99, alphas=[0.1])
    with pytest.raises(ValueError, match="different splits"):
        compare_runs(run_good, other)
