"""The regression gate behind `iqabench check`: what fails CI and what does not (gate.check and its tolerances).
The command end to end (git revisions, the accepted baseline, --accept, params.yaml's check:) is test_gate_cli.py."""
from __future__ import annotations

import copy
import math

import pandas as pd
import pytest

from iqabench import gate, gate_inputs, gate_noise
from iqabench.io import write_csv

BASELINE = {
    "within": {
        "contrique": {"synthetic-single": {"srcc": 0.90, "plcc": 0.91, "krcc": 0.72, "rmse": 0.08},
                      "synthetic-mixed": {"srcc": 0.80, "plcc": 0.82, "krcc": 0.61, "rmse": 0.11}},
        "random": {"synthetic-single": {"srcc": 0.50, "plcc": 0.52, "krcc": 0.35, "rmse": 0.20}},
    },
    "cross": {"contrique": {"synthetic-single->synthetic-mixed": {"srcc": 0.70, "plcc": 0.71}}},
}
TOLERANCES = {"default": 0.02}


def changed(**edits) -> dict:
    """A copy of BASELINE with 'section/model/dataset/statistic' set to a value (None deletes it)."""
    metrics = copy.deepcopy(BASELINE)
    for path, value in edits.items():
        section, model, dataset, statistic = path.split("/")
        leaf = metrics[section][model][dataset]
        if value is None:
            del leaf[statistic]
        else:
            leaf[statistic] = value
    return metrics


def status_of(result: gate.GateResult, metric: str) -> str:
    return next(row.status for row in result.rows if row.metric == metric)


def test_unchanged_metrics_pass_and_every_srcc_and_plcc_is_listed():
    result = gate.check(copy.deepcopy(BASELINE), BASELINE, TOLERANCES)
    assert not result.failed
    assert len(result.rows) == 8  # 3 within pairs + 1 cross pair, each {srcc, plcc}
    assert {row.status for row in result.rows} == {gate.OK}
    assert all(row.allowed_drop == 0.02 for row in result.rows)


def test_planted_srcc_regression_fails():
    result = gate.check(changed(**{"within/contrique/synthetic-single/srcc": 0.85}), BASELINE, TOLERANCES)
    assert result.failed
    assert [row.metric for row in result.failures] == ["within.contrique.synthetic-single.srcc"]
    row = result.failures[0]
    assert (row.old, row.new, row.status) == (0.90, 0.85, gate.REGRESSED)


def test_drop_within_tolerance_and_improvement_pass():
    current = changed(**{"within/contrique/synthetic-single/srcc": 0.885,
                         "within/random/synthetic-single/srcc": 0.60})
    result = gate.check(current, BASELINE, TOLERANCES)
    assert not result.failed
    assert status_of(result, "within.contrique.synthetic-single.srcc") == gate.OK
    assert status_of(result, "within.random.synthetic-single.srcc") == gate.IMPROVED


def test_drop_of_exactly_the_tolerance_passes():
    result = gate.check(changed(**{"within/contrique/synthetic-single/srcc": 0.88}), BASELINE, TOLERANCES)
    assert not result.failed


def test_missing_metric_fails_even_when_not_gated():
    current = changed(**{"cross/contrique/synthetic-single->synthetic-mixed/plcc": None})
    del current["within"]["random"]
    result = gate.check(current, BASELINE, TOLERANCES)
    assert result.failed
    assert {row.metric for row in result.failures} == {
        "cross.contrique.synthetic-single->synthetic-mixed.plcc",
        "within.random.synthetic-single.srcc", "within.random.synthetic-single.plcc"}
    assert {row.status for row in result.failures} == {gate.MISSING}


def test_plcc_regression_is_reported_but_only_srcc_gates_by_default():
    current = changed(**{"within/contrique/synthetic-single/plcc": 0.70})
    assert status_of(gate.check(current, BASELINE, TOLERANCES), "within.contrique.synthetic-single.plcc") \
        == gate.REGRESSED
    assert not gate.check(current, BASELINE, TOLERANCES).failed
    assert gate.check(current, BASELINE, TOLERANCES, gated=("srcc", "plcc")).failed


def test_srcc_that_became_undefined_is_refused_with_its_key():
    # Constant predictions make a correlation undefined: it fails the gate, and --accept must not take it.
    with pytest.raises(gate.GateError, match=r"the current metrics: within.contrique.synthetic-single.srcc is NaN"):
        gate.check(changed(**{"within/contrique/synthetic-single/srcc": float("nan")}), BASELINE, TOLERANCES)


def test_new_metrics_are_listed_as_added_and_do_not_fail():
    current = copy.deepcopy(BASELINE)
    current["within"]["contrique"]["koniq10k-subset"] = {"srcc": 0.7, "plcc": 0.7}
    result = gate.check(current, BASELINE, TOLERANCES)
    assert status_of(result, "within.contrique.koniq10k-subset.srcc") == gate.ADDED
    assert not result.failed


def test_per_dataset_tolerance_overrides_default_and_cross_uses_the_test_dataset():
    tolerances = {"default": 0.01, "synthetic-mixed": 0.1}
    current = changed(**{"within/contrique/synthetic-mixed/srcc": 0.75,
                         "cross/contrique/synthetic-single->synthetic-mixed/srcc": 0.65})
    result = gate.check(current, BASELINE, tolerances)
    assert not result.failed
    strict = gate.check(current, BASELINE, {**tolerances, "synthetic-single->synthetic-mixed": 0.01})
    assert [row.metric for row in strict.failures] == ["cross.contrique.synthetic-single->synthetic-mixed.srcc"]


def test_auto_tolerance_is_the_fieller_standard_error_times_the_factor():
    n, rho = 800, 0.9
    expected = gate.AUTO_FACTOR * (1 - rho ** 2) * math.sqrt(1.06 / (n - 3))
    assert gate.auto_tolerance(rho, n) == pytest.approx(expected)
    assert gate.auto_tolerance(0.0, 103) == pytest.approx(gate.AUTO_FACTOR * math.sqrt(1.06 / 100))
    # Bigger test sets are less noisy, so they tolerate smaller drops.
    assert gate.auto_tolerance(rho, 3200) < gate.auto_tolerance(rho, 800)
    assert gate.auto_tolerance(0.999, 10_000) == gate.MIN_TOLERANCE


def test_auto_tolerance_uses_test_set_sizes_and_names_a_dataset_without_one():
    sizes = {"synthetic-single": 800, "synthetic-mixed": 800, "synthetic-single->synthetic-mixed": 4000}
    allowed = gate.auto_tolerance(0.90, 800)  # about 0.016
    current = changed(**{"within/contrique/synthetic-single/srcc": 0.90 - allowed * 0.5,
                         "within/contrique/synthetic-mixed/srcc": 0.80 - 0.05})
    result = gate.check(current, BASELINE, {}, "auto", n_test=sizes)
    assert [row.metric for row in result.failures] == ["within.contrique.synthetic-mixed.srcc"]
    with pytest.raises(gate.GateError, match="random|synthetic-single"):
        gate.check(current, BASELINE, {}, "auto", n_test={"synthetic-mixed": 800})


def test_bad_tolerance_and_empty_baseline_get_clear_errors():
    with pytest.raises(gate.GateError, match="synthetic-single.*'lots'"):
        gate.check(BASELINE, BASELINE, {"default": 0.02, "synthetic-single": "lots"})
    with pytest.raises(gate.GateError, match="no SRCC/PLCC"):
        gate.check(BASELINE, {"accuracy": 1.0}, TOLERANCES)


def test_n_test_from_reports(tmp_path):
    write_csv(tmp_path / "within.csv", pd.DataFrame(
        {"model": ["contrique", "random"], "dataset": ["synthetic-single"] * 2, "n_images": [4000, 4000]}))
    write_csv(tmp_path / "cross.csv", pd.DataFrame(
        {"model": ["contrique", "contrique"], "train": ["a", "a"], "test": ["b", "a"], "n_test": [900, None]}))
    assert gate_noise.n_test_from_reports(tmp_path, test_frac=0.2) == {"synthetic-single": 800, "a->b": 900}
    (tmp_path / "within.csv").write_text('model,dataset,n_images\n"contrique,synthetic-single,4000\n')
    with pytest.raises(gate.GateError, match=r"within.csv is not a readable CSV table .*rerun `dvc repro evaluate`"):
        gate_noise.n_test_from_reports(tmp_path)  # (pandas' ParserError traceback before)
    write_csv(tmp_path / "within.csv", pd.DataFrame({"model": ["random"], "n_images": [10]}))
    with pytest.raises(gate.GateError, match=r"within.csv lacks the column\(s\) dataset"):
        gate_noise.n_test_from_reports(tmp_path)


def test_dvc_metrics_diff_output_splits_into_baseline_and_current():
    diff = {"reports/metrics.json": {
        "within.contrique.synthetic-single.srcc": {"old": 0.90, "new": 0.80, "diff": -0.10},
        "cross.contrique.synthetic-single->synthetic-mixed.srcc": {"old": 0.70, "new": None},
        "within.random.synthetic-single.rmse": {"old": 0.2, "new": 0.3, "diff": 0.1}}}
    assert gate_inputs.is_dvc_diff(diff) and not gate_inputs.is_dvc_diff(BASELINE)
    old, new = gate_inputs.split_dvc_diff(diff)
    result = gate.check(new, old, TOLERANCES)
    assert {row.metric: row.status for row in result.rows} == {
        "within.contrique.synthetic-single.srcc": gate.REGRESSED,
        "cross.contrique.synthetic-single->synthetic-mixed.srcc": gate.MISSING}


# ----------------------------------------------------------------------------- seed spread and the accepted baseline

SEED_STD = {"within.contrique.synthetic-single.srcc": 0.02, "within.contrique.synthetic-mixed.srcc": 0.02,
            "within.random.synthetic-single.srcc": 0.01, "cross.contrique.synthetic-single->synthetic-mixed.srcc": 0.03}


def test_tolerance_is_the_larger_of_sampling_error_and_the_seed_spread():
    current = changed(**{"within/contrique/synthetic-single/srcc": 0.85,   # -0.05: within 3 x 0.02
                         "within/random/synthetic-single/srcc": 0.475})    # -0.025: sampling 0.02 < 3 x 0.01
    result = gate.check(current, BASELINE, TOLERANCES, seed_std=SEED_STD, seed_factor=3)
    rows = {row.metric: row for row in result.rows}
    assert rows["within.contrique.synthetic-single.srcc"].allowed_drop == pytest.approx(0.06)
    assert rows["within.contrique.synthetic-single.srcc"].basis == "seed"
    assert rows["within.contrique.synthetic-single.plcc"].allowed_drop == 0.02  # no seed std: sampling only
    assert rows["within.contrique.synthetic-single.plcc"].basis == "sampling"
    assert not result.failed
    assert gate.check(current, BASELINE, TOLERANCES).failed  # the same run without the measured spread
    # A factor of 1 allows one std: -0.05 is then a regression again.
    assert gate.check(current, BASELINE, TOLERANCES, seed_std=SEED_STD, seed_factor=1).failed
    with pytest.raises(gate.GateError, match="seed_factor"):
        gate.check(current, BASELINE, TOLERANCES, seed_std=SEED_STD, seed_factor=-1)


def test_seed_noise_never_allows_a_drop_to_chance():
    # A 0.084 std (x 4.24 = 0.356) let a cross-dataset SRCC of 0.34 fall to 0.0 and pass: a broken encoder.
    n_test = {"synthetic-single": 116, "synthetic-mixed": 108, "synthetic-single->synthetic-mixed": 540}
    chance = gate.chance_level(540)
    assert chance == pytest.approx(2.33 * (1.06 / 537) ** 0.5)
    wide = {"cross.contrique.synthetic-single->synthetic-mixed.srcc": 0.084}
    baseline = changed(**{"cross/contrique/synthetic-single->synthetic-mixed/srcc": 0.34})

    def verdict(new: float, old_srcc: float = 0.34) -> gate.GateRow:
        old = changed(**{"cross/contrique/synthetic-single->synthetic-mixed/srcc": old_srcc})
        current = changed(**{"cross/contrique/synthetic-single->synthetic-mixed/srcc": new})
        result = gate.check(current, old, {"default": "auto"}, n_test=n_test, seed_std=wide)
        return {row.metric: row for row in result.rows}["cross.contrique.synthetic-single->synthetic-mixed.srcc"]

    dead = verdict(0.0)
    assert dead.status == gate.REGRESSED and dead.basis == "chance"
    assert dead.allowed_drop == pytest.approx(0.34 - chance)
    assert verdict(chance + 0.01).status == gate.OK      # a poor seed above chance: seed noise, as measured
    assert verdict(chance - 0.01).status == gate.REGRESSED
    # A baseline near chance keeps its sampling rule (the floor never narrows the gate below it).
    near = verdict(0.05, old_srcc=0.12)
    assert near.basis == "sampling" and near.allowed_drop == pytest.approx(gate.auto_tolerance(0.12, 540))
    assert near.status == gate.OK
    # Without a test-set size (a numeric tolerance) there is no chance level to cut at: the seed rule stands.
    result = gate.check(changed(**{"cross/contrique/synthetic-single->synthetic-mixed/srcc": 0.0}), baseline,
                        TOLERANCES, seed_std=wide)
    row = {r.metric: r for r in result.rows}["cross.contrique.synthetic-single->synthetic-mixed.srcc"]
    assert row.basis == "seed" and row.allowed_drop == pytest.approx(4.24 * 0.084) and row.status == gate.OK


def test_seed_std_from_variance_csv(tmp_path):
    assert gate.seed_std_from(tmp_path / "variance.csv") is None
    write_csv(tmp_path / "variance.csv", pd.DataFrame(
        {"metric": ["within.a.d.srcc", "within.b.d.srcc"], "mean": [0.5, 0.4], "std": [0.03, float("nan")],
         "n_seeds": [5, 1]}))
    assert gate.seed_std_from(tmp_path / "variance.csv") == {"within.a.d.srcc": 0.03}
    write_csv(tmp_path / "variance.csv", pd.DataFrame({"metric": ["within.a.d.srcc"], "sd": [0.03]}))
    with pytest.raises(gate.GateError, match=r"variance.csv lacks the column\(s\) std; rewrite it with benchmarks/seed"):
        gate.seed_std_from(tmp_path / "variance.csv")
    (tmp_path / "variance.csv").write_bytes(b"\xff\xfe\x00metric")
    with pytest.raises(gate.GateError, match=r"variance.csv is not a readable CSV table"):
        gate.seed_std_from(tmp_path / "variance.csv")
    (tmp_path / "variance.csv").write_text("metric,std\nwithin.a.d.srcc,0.03\nwithin.b.d.srcc,n/a?\n")
    with pytest.raises(gate.GateError, match=r"variance.csv line 3: the metric 'within.b.d.srcc' has std 'n/a\?', not "
                                             r"a number; re-measure it with `python benchmarks/seed_spread.py`"):
        gate.seed_std_from(tmp_path / "variance.csv")  # (a TypeError traceback before)


def test_the_random_row_reads_only_an_architecture_so_it_keeps_the_sampling_rule():
    # Its weights come from the seed, not from pretraining: a same-seed re-run computes the same features.
    kept = gate_noise.training_noise(SEED_STD, BASELINE)
    assert "within.random.synthetic-single.srcc" not in kept
    assert kept["within.contrique.synthetic-single.srcc"] == SEED_STD["within.contrique.synthetic-single.srcc"]
