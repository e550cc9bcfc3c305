"""The field's agreement metrics between predicted quality and MOS.

SRCC and KRCC judge ranking only. PLCC and RMSE are reported *after* a
logistic mapping of the predictions onto the MOS scale (VQEG's 4PL, monotone; or
Sheikh et al.'s 5PL, the field's default, not constrained monotone), because a
quality model is not asked to be linear in MOS. ``plcc_raw`` is the Pearson
correlation before any mapping, which is what ARNIQA's ``test.py`` and pyiqa's
default report (CONTRIQUE's repository holds no evaluation code).

Degenerate input, decided once here so that no NaN leaks into medians:
constant predictions carry no ranking information, so every correlation of a
constant predictor is defined as 0.0 (scipy would return NaN). Constant MOS means
the test set cannot rank anything: that is a data problem and raises ValueError.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

LOGISTIC_KINDS = ("none", "4pl", "5pl")
MIN_POINTS = 3
# How far a fitted curve's squared error may end above the least-squares straight line's, as a fraction of the
# MOS's total sum of squares (so of PLCC^2), before the fit counts as failed. Converged 5PL fits end at most ~1e-6
# above it (optimiser tolerance, near-linear data); a 4PL that stopped on a step or a constant, 1e-3 to 5e-2.
LINE_SLACK = 1e-5


def _pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    mos = np.asarray(mos, dtype=np.float64).ravel()
    if pred.shape != mos.shape:
        raise ValueError(f"pred has {pred.size} values but mos has {mos.size}; they must pair one to one")
    if pred.size < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} (pred, mos) pairs to correlate, got {pred.size}")
    for name, values in (("pred", pred), ("mos", mos)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"{name} has a non-finite value at position {int(np.flatnonzero(bad)[0])} "
                             f"({values[bad][0]!r}); drop or fix that image before scoring")
    if np.ptp(mos) == 0:
        raise ValueError(f"mos is constant ({float(mos[0]):g}) over {mos.size} images; a test set needs differing "
                         "scores to be ranked (on a small or few-valued dataset: a larger test_frac)")
    return pred, mos


def _constant(pred: np.ndarray) -> bool:
    return bool(np.ptp(pred) == 0)


def srcc(pred, mos) -> float:
    """Spearman rank-order correlation (ties get average ranks); 0.0 for constant pred."""
    pred, mos = _pair(pred, mos)
    if _constant(pred):
        return 0.0
    return float(stats.spearmanr(pred, mos).statistic)


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b (scipy's default, tie-corrected); 0.0 for constant pred."""
    pred, mos = _pair(pred, mos)
    if _constant(pred):
        return 0.0
    return float(stats.kendalltau(pred, mos).statistic)


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the values as given; 0.0 for constant pred."""
    pred, mos = _pair(pred, mos)
    if _constant(pred):
        return 0.0
    return float(stats.pearsonr(pred, mos).statistic)


def rmse(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float(np.sqrt(np.mean((pred - mos) ** 2)))


def logistic_4pl(x, beta1, beta2, beta3, beta4):
    """VQEG 4-parameter logistic: from beta2 (low end) to beta1 (high end)."""
    return beta2 + (beta1 - beta2) / (1.0 + np.exp(-(x - beta3) / np.abs(beta4)))


def logistic_5pl(x, beta1, beta2, beta3, beta4, beta5):
    """Sheikh et al. (2006) 5-parameter logistic: a sigmoid plus a linear term."""
    return beta1 * (0.5 - 1.0 / (1.0 + np.exp(beta2 * (x - beta3)))) + beta4 * x + beta5


def logistic_fit(pred, mos, params: int = 5, maxfev: int = 2000) -> np.ndarray:
    """Map ``pred`` onto the MOS scale with the 4- or 5-parameter logistic; return the fitted values.

    The fit runs on z-scored predictions. Both logistic families are closed under an
    affine change of x, so this changes no fitted value, but it makes one set of
    initial guesses work whatever the predictor's scale (raw NIQE and a ridge output
    differ by orders of magnitude, which is what makes the usual fixed guesses fail).

    Levenberg-Marquardt is run through ``scipy.optimize.least_squares`` (what
    ``curve_fit`` calls) because on near-linear data the 5PL's sigmoid amplitude and
    slope trade off along a flat valley: the parameters never settle, ``curve_fit``
    raises at ``maxfev``, yet the fitted values have long converged. Those values are
    kept whenever they are finite and no worse than the starting curve or the
    least-squares straight line (``LINE_SLACK``); otherwise, and on ``params`` test
    images or fewer (where the curve passes through every point), a warning is issued
    and that straight line is returned: the best map the logistic family contains (the
    5PL exactly, the 4PL in the limit of a wide sigmoid) that cannot overfit, so PLCC
    stays ``|plcc_raw|`` there rather than taking the raw predictions' sign.

    The line check matters for the 4PL: it has no linear term, and Levenberg-Marquardt
    can jump in its first steps to a near-step curve whose saturated sigmoid has a
    vanishing gradient, where it stops as converged. That curve fits worse than a line,
    its PLCC can fall far below ``|plcc_raw|`` (a step beyond every prediction is a
    constant: PLCC 0.0), and without the check it was kept.
    """
    if params not in (4, 5):
        raise ValueError(f"params must be 4 or 5 (VQEG logistic), got {params!r}")
    pred, mos = _pair(pred, mos)
    if _constant(pred):
        # Every logistic of a constant is a constant; the best one is the MOS mean (RMSE = std of the MOS),
        # whatever value the predictor sits at.
        return np.full_like(pred, mos.mean())
    if pred.size <= params:
        return _line_instead(pred, mos, params, f"{pred.size} test images; it needs more than {params}")
    z = (pred - pred.mean()) / pred.std()
    # Start the sigmoid rising for positively correlated predictors and falling otherwise,
    # so the optimiser does not have to cross a flat region to flip its direction.
    direction = 1.0 if stats.spearmanr(z, mos).statistic >= 0 else -1.0
    lo, hi = float(mos.min()), float(mos.max())
    if params == 4:
        func = logistic_4pl
        start = np.array([hi, lo, 0.0, 1.0] if direction > 0 else [lo, hi, 0.0, 1.0])
    else:
        func = logistic_5pl
        start = np.array([direction * (hi - lo), 1.0, 0.0, 0.0, float(np.median(mos))])
    with np.errstate(over="ignore"):  # exp overflow on wild trial steps saturates the sigmoid, harmlessly
        sse_start = float(np.sum((func(z, *start) - mos) ** 2))
        try:
            # ftol 1e-6: on near-linear data later steps mostly sharpen the curve along the valley
            # (fitted values move < 1e-6 relative in SSE) at ~5x the evaluations. Not always: from
            # a flat stretch near the start the fit can stop where scipy's default ftol (1e-8) goes
            # on to a sharper, step-like minimum a few % lower in SSE. The 5PL's SSE has several
            # local minima there anyway, and the reference fits (DBCNN, pyiqa: one curve_fit from a
            # fixed start) land in one of them too; see docs/protocol.md.
            result = optimize.least_squares(lambda beta: func(z, *beta) - mos, start, method="lm",
                                            max_nfev=maxfev, ftol=1e-6)
            fitted = func(z, *result.x)
            sse = float(np.sum((fitted - mos) ** 2))
            sse_line = float(np.sum((_line(pred, mos) - mos) ** 2))
            sst = float(np.sum((mos - mos.mean()) ** 2))
            reason = ("non-finite fitted values" if not np.all(np.isfinite(fitted)) else
                      "no improvement on the initial curve" if sse > sse_start else
                      "it ends worse than the least-squares straight line" if sse > sse_line + LINE_SLACK * sst else "")
        except (ValueError, np.linalg.LinAlgError) as err:
            # An exception may carry no message (a bare LinAlgError); the reason must never be ""
            # here, or the fit would count as a success with no fitted values.
            reason = str(err) or type(err).__name__
    if reason:
        return _line_instead(pred, mos, params, reason)
    return fitted


def _line_instead(pred: np.ndarray, mos: np.ndarray, params: int, reason: str) -> np.ndarray:
    warnings.warn(f"{params}-parameter logistic fit failed ({reason}); PLCC and RMSE use the least-squares "
                  "straight line instead", RuntimeWarning, stacklevel=3)
    return _line(pred, mos)


def _line(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """The least-squares straight line's values: MOS regressed on the predictions."""
    slope, offset = np.polyfit(pred, mos, 1)
    return slope * pred + offset


def compute_metrics(pred, mos, logistic: str = "5pl") -> dict[str, float]:
    """srcc, krcc, plcc and rmse (after the ``logistic`` mapping), and plcc_raw (before it)."""
    if logistic not in LOGISTIC_KINDS:
        raise ValueError(f"logistic must be one of {LOGISTIC_KINDS}, got {logistic!r}")
    pred, mos = _pair(pred, mos)
    mapped = pred if logistic == "none" else logistic_fit(pred, mos, params=int(logistic[0]))
    return {
        "srcc": srcc(pred, mos),
        "krcc": krcc(pred, mos),
        "plcc": plcc(mapped, mos),
        "plcc_raw": plcc(pred, mos),
        "rmse": rmse(mapped, mos),
    }


def batch_srcc(preds: np.ndarray, mos) -> np.ndarray:
    """SRCC of every row of ``preds`` (shape [..., n]) against one ``mos`` vector, vectorised.

    Used to score every ridge alpha at once; rows that are constant score 0.0 like :func:`srcc`.
    """
    preds = np.asarray(preds, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    if preds.shape[-1] != mos.size:
        raise ValueError(f"preds rows have {preds.shape[-1]} values but mos has {mos.size}")
    return rowwise_pearson(stats.rankdata(preds, axis=-1), stats.rankdata(mos))


def rowwise_pearson(rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis, broadcasting ``target``; 0.0 where either side is constant."""
    rows = rows - rows.mean(axis=-1, keepdims=True)
    target = target - target.mean(axis=-1, keepdims=True)
    norm = np.sqrt((rows ** 2).sum(axis=-1) * (target ** 2).sum(axis=-1))
    dot = (rows * target).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)
