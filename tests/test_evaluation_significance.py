import numpy as np
import pandas as pd
import pytest
from scipy import stats

from iqabench import manifest
from iqabench.evaluation import significance
from iqabench.evaluation.protocol import run_splits
from iqabench.evaluation.significance import common_test, compare, holm, image_bootstrap, seed_stability


def quality_features(n=120, d=16, seed=0):
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 1, n)
    features = np.outer(quality, rng.normal(size=d)) + rng.normal(0, 0.2, (n, d))
    frame = manifest.make("toy", [f"img{i}.png" for i in range(n)], quality, score_type="MOS", lo=0, hi=1,
                          higher_is_better=True, score_source="test", content_id=[f"ref{i // 6}" for i in range(n)])
    return features, frame


def test_consistent_gain_over_ten_splits_is_significant():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.80, 0.85, 10)
    a = b + 0.03 + rng.normal(0, 0.005, 10)
    result = compare(a, b)  # the former test, kept to count changed verdicts
    assert result["diff"] == pytest.approx(np.mean(a - b))
    assert result["p"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert result["lo"] > 0 and result["significant"]
    corrected = compare(a, b, test_train_ratio=0.25)
    assert corrected["method"] == significance.CORRECTED_T and corrected["significant"]


def test_noise_sized_difference_is_not_significant():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.80, 0.85, 10)
    a = b + rng.normal(0, 0.01, 10)
    result = compare(a, b)
    assert result["lo"] < 0 < result["hi"] and not result["significant"]


def test_identical_models_tie():
    for ratio in (None, 0.25):
        result = compare([0.8, 0.9, 0.85], [0.8, 0.9, 0.85], test_train_ratio=ratio)
        assert result == {**result, "diff": 0.0, "lo": 0.0, "hi": 0.0, "p": 1.0, "significant": False}


def test_corrected_t_test_is_wider_than_the_naive_one():
    rng = np.random.default_rng(2)
    d = 0.01 + rng.normal(0, 0.01, 10)
    corrected = compare(d, np.zeros(10), test_train_ratio=0.25)
    naive = stats.ttest_1samp(d, 0.0)
    assert corrected["p"] > naive.pvalue
    se = np.sqrt((1 / 10 + 0.25) * d.var(ddof=1))  # Nadeau & Bengio (2003)
    assert corrected["hi"] - corrected["lo"] == pytest.approx(2 * stats.t.ppf(0.975, 9) * se)
    assert corrected["p"] == pytest.approx(2 * stats.t.sf(abs(d.mean()) / se, 9))


def test_overlapping_splits_can_make_a_wilcoxon_verdict_vanish():
    # Ten splits that all favour A, mostly by a hair: Wilcoxon (ranks only) calls it at its smallest p, 2/1024,
    # but with 80/20 splits the corrected variance is 3.5x the naive one and the mean gain is inside the noise.
    d = np.array([0.001, 0.001, 0.002, 0.002, 0.003, 0.003, 0.004, 0.005, 0.020, 0.030])
    assert compare(d, np.zeros(10))["significant"]
    assert not compare(d, np.zeros(10), test_train_ratio=0.25)["significant"]


def test_a_constant_non_zero_difference_is_certain_and_bad_ratios_are_refused():
    result = compare([0.75, 0.5, 0.25], [0.5, 0.25, 0.0], test_train_ratio=0.25)  # exact in binary
    assert result["p"] == 0.0 and result["lo"] == result["hi"] == 0.25 and result["significant"]
    with pytest.raises(ValueError, match="n_test / n_train"):
        compare([0.9, 0.8], [0.8, 0.7], test_train_ratio=0.0)


def test_holm_matches_the_textbook_step_down():
    # Holm (1979): sorted p * (m - i), running maximum, capped at 1; original order kept.
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0
    assert (holm(np.random.default_rng(0).uniform(size=20)) >= 0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def _variance(**rows) -> pd.DataFrame:
    return pd.DataFrame([{"metric": f"within.{k}.d.srcc", "mean": m, "std": s, "n_seeds": 5}
                         for k, (m, s) in rows.items()])


def test_a_verdict_between_trained_rows_must_hold_across_seeds():
    table = pd.DataFrame({"dataset": ["d", "d", "d", "d"], "model_a": ["contrique", "contrique", "contrique", "x"],
                          "model_b": ["arniqa", "random", "brisque", "y"], "diff": [0.145, 0.3, -0.2, 0.1],
                          "verdict": ["A better", "A better", "inside noise", "A better"]})
    variance = _variance(contrique=(0.58, 0.03), arniqa=(0.56, 0.05), random=(0.25, 0.01), brisque=(0.7, 0.0))
    stable = seed_stability(table, variance).tolist()
    # contrique - arniqa over seeds: 0.02 < sqrt(0.03^2 + 0.05^2) = 0.058; contrique - random: 0.33 > 0.032.
    assert stable == [significance.NOT_STABLE, significance.HOLDS, "", ""]
    reversed_means = _variance(contrique=(0.50, 0.01), random=(0.60, 0.01))
    assert seed_stability(table.iloc[[1]], reversed_means).tolist() == [significance.NOT_STABLE]
    with pytest.raises(ValueError, match="std"):
        seed_stability(table, variance.drop(columns="std"))


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


def test_paired_runs_need_the_same_splits_and_both_tests_see_the_gain():
    # As study.run pairs two rows: their shared test images (common_test), then the corrected t over splits.
    features, frame = quality_features()
    noise = np.random.default_rng(4).normal(size=features.shape)
    run_good = run_splits(features, frame, n_splits=4, alphas=[0.1])
    run_bad = run_splits(noise, frame, n_splits=4, alphas=[0.1])
    mos, good, bad, ratios = zip(*common_test(run_good, run_bad))
    srcc_good = [stats.spearmanr(p, m).statistic for p, m in zip(good, mos)]
    srcc_bad = [stats.spearmanr(p, m).statistic for p, m in zip(bad, mos)]
    splits = compare(srcc_good, srcc_bad, test_train_ratio=float(np.mean(ratios)))
    assert splits["diff"] > 0.5 and splits["method"] == significance.CORRECTED_T and splits["significant"]
    assert image_bootstrap(list(mos), list(good), list(bad), n_boot=200)["significant"]
    other = run_splits(noise, frame, n_splits=4, seed=99, alphas=[0.1])
    with pytest.raises(ValueError, match="different splits"):
        common_test(run_good, other)
    # The same seed with another test fraction draws other parts: a seed alone does not pin a split.
    wider = run_splits(noise, frame, n_splits=4, test_frac=0.4, alphas=[0.1])
    with pytest.raises(ValueError, match="different splits"):
        common_test(run_good, wider)
