import warnings

import numpy as np
import pytest
from scipy import optimize, stats

from iqabench.evaluation import metrics


@pytest.fixture
def noisy_pair():
    rng = np.random.default_rng(1)
    mos = rng.uniform(0, 1, 80)
    pred = mos ** 2 + rng.normal(0, 0.05, 80)
    return pred, mos


def test_correlations_match_scipy(noisy_pair):
    pred, mos = noisy_pair
    assert metrics.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert metrics.krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert metrics.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    assert metrics.rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


def test_five_point_worked_example():
    # Ranks 1..5 against 1,3,2,5,4: two discordant pairs of ten -> tau = (8 - 2) / 10;
    # squared rank differences sum to 4 -> rho = 1 - 6 * 4 / (5 * 24).
    pred = [1, 2, 3, 4, 5]
    mos = [1, 3, 2, 5, 4]
    assert metrics.krcc(pred, mos) == pytest.approx(0.6)
    assert metrics.srcc(pred, mos) == pytest.approx(0.8)
    assert metrics.plcc(pred, mos) == pytest.approx(0.8)
    assert metrics.rmse(pred, mos) == pytest.approx(np.sqrt(4 / 5))


def test_monotone_nonlinear_data_is_perfect_after_logistic():
    mos = np.linspace(1, 5, 60)
    # A logit of MOS: same order, far from linear, and MOS = 0.95 + 4.1 / (1 + exp(-pred)) is a 4PL.
    pred = np.log((mos - 0.95) / (5.05 - mos))
    result = metrics.compute_metrics(pred, mos, logistic="4pl")
    assert result["srcc"] == pytest.approx(1.0)
    assert result["krcc"] == pytest.approx(1.0)
    assert result["plcc_raw"] < 0.99
    assert result["plcc"] > 0.9999
    assert result["rmse"] < 0.02


@pytest.mark.parametrize("params", [4, 5])
def test_logistic_fit_recovers_known_curve_whatever_the_predictor_scale(params):
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, 200)
    mos = metrics.logistic_4pl(x, 80.0, 20.0, 0.3, 0.5)
    for scale, shift in [(1.0, 0.0), (1e-4, 0.0), (1e3, 5e3), (-7.0, 1.0)]:
        fitted = metrics.logistic_fit(x * scale + shift, mos, params=params)
        assert np.max(np.abs(fitted - mos)) < 0.5, (scale, shift)


def test_logistic_fit_on_negatively_correlated_predictor_still_fits():
    mos = np.linspace(0, 1, 50)
    pred = -np.tanh(3 * (mos - 0.5))  # e.g. a distortion score: lower is better
    out = metrics.compute_metrics(pred, mos, logistic="5pl")
    assert out["srcc"] == pytest.approx(-1.0)
    assert out["plcc"] > 0.999  # the fitted map flips the sign onto the MOS scale


def test_logistic_none_reports_raw_values(noisy_pair):
    pred, mos = noisy_pair
    out = metrics.compute_metrics(pred, mos, logistic="none")
    assert out["plcc"] == out["plcc_raw"]
    assert out["rmse"] == pytest.approx(metrics.rmse(pred, mos))
    assert set(out) == {"srcc", "krcc", "plcc", "plcc_raw", "rmse"}


def _line(pred, mos):
    slope, offset = np.polyfit(pred, mos, 1)
    return slope * pred + offset


def test_failed_fit_warns_and_falls_back_to_the_straight_line(noisy_pair, monkeypatch):
    pred, mos = -noisy_pair[0], noisy_pair[1]

    def diverging(fun, x0, **kwargs):
        return optimize.OptimizeResult(x=np.full_like(x0, np.nan), status=0)

    monkeypatch.setattr(metrics.optimize, "least_squares", diverging)
    with pytest.warns(RuntimeWarning, match="logistic fit failed"):
        fitted = metrics.logistic_fit(pred, mos, params=5)
    np.testing.assert_allclose(fitted, _line(pred, mos))
    with pytest.warns(RuntimeWarning, match="straight line"):  # still failing: PLCC is the line's, |plcc_raw|
        out = metrics.compute_metrics(pred, mos)
    assert out["plcc_raw"] < 0 and out["plcc"] == pytest.approx(-out["plcc_raw"])


@pytest.mark.parametrize("n, params", [(3, 5), (5, 5), (4, 4)])
def test_no_more_test_images_than_parameters_gets_the_line_not_an_interpolating_curve(n, params):
    # At n == params the curve passes through every point (PLCC 1 on noise); below, the optimiser refuses.
    rng = np.random.default_rng(n)
    pred, mos = rng.normal(size=n), rng.uniform(size=n)
    with pytest.warns(RuntimeWarning, match=f"{n} test images; it needs more than {params}"):
        fitted = metrics.logistic_fit(pred, mos, params=params)
    np.testing.assert_allclose(fitted, _line(pred, mos))


def test_near_linear_data_fits_without_fallback_and_never_lowers_plcc():
    # Near-linear data leaves the 5PL's sigmoid unidentifiable: curve_fit used to give up
    # on about one case in six here and report raw PLCC for them.
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(25):
            mos = rng.uniform(0, 1, 30)
            pred = mos * rng.uniform(0.2, 2) + rng.normal(0, rng.uniform(0.02, 0.5), 30)
            for logistic in ("4pl", "5pl"):
                out = metrics.compute_metrics(pred, mos, logistic=logistic)
                if logistic == "5pl":  # contains the linear map, so can only fit better
                    assert out["plcc"] >= out["plcc_raw"] - 1e-9


def test_a_4pl_that_stops_on_a_step_falls_back_to_the_line():
    # 24 test images, a good predictor (plcc_raw 0.947). From the z-scored start, Levenberg-Marquardt jumped
    # to a near-step 4PL (|beta4| 0.001 std) in 4 evaluations and stopped there (saturated sigmoid: no
    # gradient); that curve fits worse than the straight line, and its PLCC of 0.929 was reported. A fit
    # worse than the line now counts as failed: PLCC is |plcc_raw|, as for any failed fit.
    pred = np.array([0.277, 1.009, 0.558, 0.727, 0.809, 0.822, 0.894, 0.163, 0.234, 0.169, -0.196, 0.931,
                     0.22, 0.693, 0.377, 0.56, 0.416, 0.66, 0.046, 0.249, 0.236, 0.389, 1.032, 0.951])
    mos = np.array([0.248, 0.778, 0.372, 0.882, 0.967, 0.818, 0.943, 0.226, 0.213, 0.3, 0.014, 0.933,
                    0.149, 0.687, 0.262, 0.506, 0.416, 0.681, 0.19, 0.351, 0.178, 0.394, 0.906, 0.922])
    with pytest.warns(RuntimeWarning, match="worse than the least-squares straight line"):
        out = metrics.compute_metrics(pred, mos, logistic="4pl")
    assert out["plcc"] == pytest.approx(out["plcc_raw"]) and out["plcc_raw"] > 0.94
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((_line(pred, mos) - mos) ** 2)))
    # The 5PL (linear term: never stuck below the line) fits on the same data, silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.compute_metrics(pred, mos, logistic="5pl")["plcc"] >= out["plcc_raw"]


def test_constant_predictions_score_zero_without_nan_or_warning():
    mos = np.linspace(0, 1, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.compute_metrics(np.full(20, 0.5), mos)
    assert out["srcc"] == out["krcc"] == out["plcc"] == out["plcc_raw"] == 0.0
    # The best logistic of a constant is the MOS mean, wherever the constant sits.
    for value in (0.5, 50.0, -3.0):
        assert metrics.compute_metrics(np.full(20, value), mos)["rmse"] == pytest.approx(mos.std())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="mos is constant"):
        metrics.srcc([1, 2, 3], [2, 2, 2])
    with pytest.raises(ValueError, match="pred has 3 values but mos has 4"):
        metrics.plcc([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="non-finite value at position 1"):
        metrics.krcc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="logistic must be one of"):
        metrics.compute_metrics([1, 2, 3], [1, 2, 4], logistic="3pl")


def test_batch_srcc_equals_scipy_row_by_row(noisy_pair):
    pred, mos = noisy_pair
    rows = np.stack([pred, -pred, np.round(pred, 1), np.zeros_like(pred)])
    expected = [stats.spearmanr(r, mos).statistic for r in rows[:3]] + [0.0]
    np.testing.assert_allclose(metrics.batch_srcc(rows, mos), expected, atol=1e-12)


@pytest.mark.parametrize("error", [np.linalg.LinAlgError(), ValueError("")])
def test_an_optimiser_error_without_a_message_still_falls_back(noisy_pair, monkeypatch, error):
    pred, mos = noisy_pair

    def raising(*args, **kwargs):
        raise error

    monkeypatch.setattr(metrics.optimize, "least_squares", raising)
    with pytest.warns(RuntimeWarning, match=f"logistic fit failed \\({type(error).__name__}\\)"):
        fitted = metrics.logistic_fit(pred, mos, params=5)
    np.testing.assert_allclose(fitted, _line(pred, mos))


def _reference_5pl(pred, mos):
    """The field's 5PL fit: scipy curve_fit from DBCNN's verify_performance.m start
    [10, 0, mean(pred), 0.1, 0.1] (pyiqa's fit_curve reuses it with mean(mos) as beta3) and from
    the classic [max(mos), 10/std(pred), mean(pred), 0.1, 0.1]; the lowest-SSE success is kept."""
    best = None
    for start in ([10.0, 0.0, pred.mean(), 0.1, 0.1], [mos.max(), 10.0 / pred.std(), pred.mean(), 0.1, 0.1]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                beta, _ = optimize.curve_fit(metrics.logistic_5pl, pred, mos, p0=start, maxfev=20000)
        except RuntimeError:
            continue
        fitted = metrics.logistic_5pl(pred, *beta)
        if np.all(np.isfinite(fitted)) and (best is None or np.sum((fitted - mos) ** 2) < np.sum((best - mos) ** 2)):
            best = fitted
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(6))
def test_5pl_plcc_and_rmse_agree_with_the_reference_fit_on_a_clear_sigmoid(seed):
    # Clearly sigmoidal predictions (one least-squares optimum): the reference fits and iqabench's
    # z-scored start must land on the same curve whatever the predictor's offset and scale.
    # (On near-linear noisy data the 5PL's SSE has several local minima; any single-start fit,
    # the reference's included, can end in a different one: docs/protocol.md.)
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 1, 200)
    gain = rng.uniform(0.5, 20)
    pred = np.log((mos + 0.02) / (1.02 - mos)) * gain + rng.normal(0, 0.1 * gain, 200) + rng.uniform(-50, 50)
    reference = _reference_5pl(pred, mos)
    out = metrics.compute_metrics(pred, mos, logistic="5pl")
    assert out["plcc"] == pytest.approx(stats.pearsonr(reference, mos).statistic, abs=1e-4)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((reference - mos) ** 2)), abs=1e-4)
    assert out["plcc"] > out["plcc_raw"] + 0.01  # the mapping matters on this data
    # PLCC and RMSE are of the fitted values; RMSE is the root of the *mean* squared error
    # (DBCNN's verify_performance.m; pyiqa's calculate_rmse too since 4e697fa, 2022: sqrt(mean + 1e-8)).
    fitted = metrics.logistic_fit(pred, mos, params=5)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((fitted - mos) ** 2)))
    assert out["plcc"] == pytest.approx(stats.pearsonr(fitted, mos).statistic)


def test_rank_correlations_use_the_raw_predictions_and_handle_ties():
    # Ties on both sides: SRCC is Pearson on average ranks, KRCC is tau-b (tie-corrected).
    pred = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0])
    mos = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0])
    rho = np.corrcoef(stats.rankdata(pred), stats.rankdata(mos))[0, 1]
    concordant = discordant = ties_pred = ties_mos = 0
    for i in range(8):
        for j in range(i + 1, 8):
            a, b = np.sign(pred[i] - pred[j]), np.sign(mos[i] - mos[j])
            concordant += a * b > 0
            discordant += a * b < 0
            ties_pred += a == 0 and b != 0
            ties_mos += b == 0 and a != 0
    tau_b = (concordant - discordant) / np.sqrt((concordant + discordant + ties_pred)
                                                * (concordant + discordant + ties_mos))
    assert metrics.srcc(pred, mos) == pytest.approx(rho)
    assert metrics.krcc(pred, mos) == pytest.approx(tau_b)
    # The logistic never touches them: same values with any mapping.
    for logistic in metrics.LOGISTIC_KINDS:
        out = metrics.compute_metrics(pred, mos, logistic=logistic)
        assert (out["srcc"], out["krcc"]) == (pytest.approx(rho), pytest.approx(tau_b))
