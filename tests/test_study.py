"""The whole study on made-up features: one informative model, one noise model."""
import numpy as np
import pandas as pd
import pytest

from iqabench import manifest, study

CFG = dict(models=["good", "noise"], n_splits=6, test_frac=0.2, val_frac=0.0, seed=0, alphas=[0.1],
           standardize=False, logistic="5pl")


def _dataset(name, n, rng):
    quality = rng.uniform(size=n)
    frame = manifest.make(name, [f"{name}/{i}.png" for i in range(n)], quality * 100, score_type="MOS", lo=0, hi=100,
                          higher_is_better=True, score_source="made up", content_id=[str(i // 4) for i in range(n)])
    good = np.c_[quality + 0.05 * rng.normal(size=n), rng.normal(size=(n, 3))]
    return frame, {"good": good, "noise": rng.normal(size=(n, 4))}


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    manifests, features = {}, {}
    for name, n in (("a", 120), ("b", 80)):
        manifests[name], features[name] = _dataset(name, n, rng)
    return study.run(features, manifests, CFG)


def test_within_rows_rank_the_informative_model_first(result):
    srcc = result.within.set_index(["model", "dataset"])["srcc"]
    assert srcc[("good", "a")] > 0.9 and abs(srcc[("noise", "a")]) < 0.5
    assert (result.within["srcc_q25"] <= result.within["srcc"]).all()
    assert (result.within["srcc"] <= result.within["srcc_q75"]).all()


def test_cross_has_every_ordered_pair_plus_the_diagonal(result):
    assert len(result.cross) == 2 * (2 + 2)
    diag = result.cross[result.cross["within"]]
    assert (diag["train"] == diag["test"]).all()
    off = result.cross[~result.cross["within"]].set_index(["model", "train", "test"])["srcc"]
    assert off[("good", "a", "b")] > 0.9


def test_significance_marks_the_real_gap(result):
    row = result.significance.iloc[0]
    assert (row["model_a"], row["model_b"]) == ("good", "noise") and row["significant"] and row["diff"] > 0.4
    assert row["verdict"] == "A better" and row["method"].startswith("nadeau-bengio")


def test_significance_is_the_corrected_t_test_with_holm_across_the_whole_table(result):
    from iqabench.evaluation import significance

    sig = result.significance
    assert list(sig.columns) == study.SIGNIFICANCE_COLUMNS
    assert set(sig["dataset"]) == {"a", "b"}  # one family: every dataset's comparisons together
    assert sig["p_holm"].to_numpy() == pytest.approx(significance.holm(sig["p_raw"].to_numpy()))
    assert (sig["p_holm"] >= sig["p_raw"]).all()
    assert (sig["significant"] == (sig["p_holm"] < study.FAMILY_ALPHA)).all()
    assert sig["correction"].iloc[0] == f"holm over {len(sig)} comparisons"
    # The splits are 80/20 by content, so n_test / n_train is about 0.25.
    assert sig["test_train_ratio"].between(0.2, 0.3).all()
    assert set(sig["verdict_wilcoxon"]) <= {"A better", "B better", "inside noise"}


def test_holm_verdicts_follow_the_adjusted_p_not_the_raw_one():
    rows = pd.DataFrame({"dataset": ["a"] * 3, "model_a": ["x", "x", "y"], "model_b": ["y", "z", "z"],
                         "diff": [0.1, -0.2, 0.05], "lo": 0.0, "hi": 0.0, "p_raw": [0.02, 0.001, 0.03],
                         "n_splits": 10, "test_train_ratio": 0.25, "method": "m",
                         "verdict_wilcoxon": ["A better", "B better", "A better"]})
    out = study.holm_verdicts(rows)
    # Holm: 0.001 * 3 = 0.003, 0.02 * 2 = 0.04, 0.03 * 1 -> max(0.04, 0.03) = 0.04.
    assert out["p_holm"].tolist() == pytest.approx([0.04, 0.003, 0.04])
    assert out["verdict"].tolist() == ["A better", "B better", "A better"]
    strict = study.holm_verdicts(rows.assign(p_raw=[0.03, 0.001, 0.04]))
    assert strict["verdict"].tolist() == ["inside noise", "B better", "inside noise"]
    assert study.holm_verdicts(rows.iloc[:0]).empty


def test_predictions_cover_each_split_test_part(result):
    per = result.predictions.groupby(["model", "dataset", "split"]).size()
    assert per.loc[("good", "a")].between(20, 28).all()  # ~20% of 120 images, content-disjoint
    assert set(result.per_split["split"]) == set(range(CFG["n_splits"]))


def test_metrics_dict_is_nested_for_dvc(result):
    metrics = study.metrics_dict(result)
    assert set(metrics["within"]["good"]["a"]) == {"srcc", "plcc", "krcc", "rmse"}
    assert set(metrics["cross"]["noise"]) == {"a->b", "b->a"}


def test_mlflow_training_set_runs_regroup_a_models_metrics_by_what_it_was_trained_on():
    from iqabench.tracking import by_training_set

    model = {"within": {"a": {"srcc": 0.9, "plcc": 0.8}, "b": {"srcc": 0.7, "plcc": 0.6}},
             "cross": {"a->b": {"srcc": 0.5, "plcc": 0.4}, "b->a": {"srcc": 0.3, "plcc": 0.2}}}
    assert by_training_set(model) == {
        "a": {"within.srcc": 0.9, "within.plcc": 0.8, "cross.b.srcc": 0.5, "cross.b.plcc": 0.4},
        "b": {"within.srcc": 0.7, "within.plcc": 0.6, "cross.a.srcc": 0.3, "cross.a.plcc": 0.2}}


def test_a_row_missing_on_one_dataset_leaves_its_cells_empty_and_the_rest_intact():
    # A full-reference row has features only on sets with references.
    rng = np.random.default_rng(1)
    manifests, features = {}, {}
    for name, n in (("a", 120), ("b", 80)):
        manifests[name], features[name] = _dataset(name, n, rng)
    del features["b"]["noise"]
    out = study.run(features, manifests, CFG)
    assert set(map(tuple, out.within[["model", "dataset"]].to_numpy())) == {("good", "a"), ("good", "b"),
                                                                          ("noise", "a")}
    assert set(map(tuple, out.cross.loc[~out.cross["within"], ["model", "train", "test"]].to_numpy())) == {
        ("good", "a", "b"), ("good", "b", "a")}
    assert set(out.significance["dataset"]) == {"a"}


def test_the_within_table_names_its_test_its_correction_and_what_changed(result):
    from iqabench import reporting

    sig = result.significance.copy()
    sig.loc[0, "verdict_wilcoxon"] = "inside noise"  # one verdict the former test saw otherwise
    text = reporting.within_markdown(result.within, sig)
    assert "corrected resampled t-test" in text and f"Holm's correction across all {len(sig)}" in text
    assert f"1 of {len(sig)} verdicts changed (0 now inside the noise, 1 newly called)" in text
    assert "Seed spread not measured" in text and "across seeds |" not in text
    variance = pd.DataFrame({"metric": ["within.good.a.srcc", "within.noise.a.srcc"], "mean": [0.9, 0.88],
                             "std": [0.02, 0.03], "n_seeds": [5, 5]})
    with_seeds = reporting.within_markdown(result.within, sig, variance)
    assert "SRCC seed std" in with_seeds and "| 0.020 |" in with_seeds
    # good vs noise on "a" is called, but their seed means differ by less than the combined seed std.
    assert "5 seeds" in with_seeds and "| A better | not stable across seeds |" in with_seeds


def test_predictions_name_images_relative_to_the_repository_not_this_checkout(tmp_path, monkeypatch):
    # data/eval/predictions.csv is a DVC output: absolute paths would give it another hash in every clone.
    monkeypatch.chdir(tmp_path)
    frame, features = _dataset("a", 40, np.random.default_rng(1))
    frame["image"] = [str(tmp_path / "data" / p) for p in frame["image"]]
    images = study.run({"a": features}, {"a": frame}, {**CFG, "n_splits": 2}).predictions["image"]
    assert images.str.startswith("data/a/").all() and not images.str.startswith("/").any()


@pytest.mark.parametrize("n, expected", [(2, "1 distinct content ids cannot give"),
                                         (5, "keeps 1 train and 4 test images; need at least 2 and 3")])
def test_a_dataset_too_small_for_the_splits_is_named_with_what_to_do(n, expected):
    rng = np.random.default_rng(2)
    manifests, features = {}, {}
    for name, size in (("a", 120), ("tiny", n)):
        manifests[name], features[name] = _dataset(name, size, rng)
    with pytest.raises(ValueError) as error:
        study.run(features, manifests, CFG)
    assert str(error.value).startswith("dataset 'tiny', model 'good': ") and expected in str(error.value)


def test_an_alpha_that_flattens_every_prediction_names_the_dataset_and_model():
    rng = np.random.default_rng(3)
    frame, features = _dataset("a", 40, rng)
    with pytest.raises(ValueError, match=r"^dataset 'a', model 'good': ridge alpha 1e\+300 is more than"):
        study.run({"a": features}, {"a": frame}, {**CFG, "alphas": [1e300]})


@pytest.mark.parametrize("rule", ["median", "per_split"])
def test_the_alpha_rule_of_params_reaches_the_choice_of_alpha(rule, monkeypatch):
    from iqabench.evaluation import protocol
    seen, choose = [], protocol.select_alpha
    monkeypatch.setattr(protocol, "select_alpha", lambda *a, rule: seen.append(rule) or choose(*a, rule=rule))
    rng = np.random.default_rng(1)
    frame, features = _dataset("a", 120, rng)
    cfg = {**CFG, "val_frac": 0.2, "alphas": [0.01, 1.0, 100.0], "alpha_rule": rule}
    out = study.run({"a": features}, {"a": frame}, cfg)
    assert seen == [rule, rule]  # one choice per model
    alphas = out.per_split.groupby("model")["alpha"].nunique()
    assert rule == "per_split" or (alphas == 1).all()  # ARNIQA's rule: one alpha for the whole dataset
