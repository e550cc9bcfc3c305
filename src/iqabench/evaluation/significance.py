"""Is model A's SRCC really different from model B's, or inside the noise?

Two sources of noise, two tests, both on *paired* results (same dataset, same
splits, same test images):

* :func:`compare` — over splits. With ``test_train_ratio`` (n_test / n_train) it is
  Nadeau & Bengio's (2003) corrected resampled t-test: random splits share training
  images, so their differences are positively correlated and the naive variance
  s^2 / k is too small; the test widens it to (1/k + n_test/n_train) s^2 (for 80/20
  splits that is 3.5x the naive variance at k = 10). This is what the study's
  verdicts use, with :func:`holm` across the comparisons of one table. Without
  ``test_train_ratio`` it is the older Wilcoxon signed-rank test with a bootstrap
  interval of the mean, which treats overlapping splits as independent and so is
  too eager; the study keeps it only to count the verdicts that changed.
* :func:`image_bootstrap` — over test images: resample each split's test images
  with replacement, recompute both SRCCs, and take the interval of the median
  (over splits) difference. It says how much the headline would move with another
  draw of test images of the same kind.

Neither sees the noise of pretraining: :func:`seed_stability` checks a verdict
against the spread over pretraining and split seeds that benchmarks/seed_spread.py
measures (reports/variance.csv).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import rowwise_pearson

MAX_BOOTSTRAP_CELLS = 4_000_000  # resampled values held at once; bounds memory, not results
CORRECTED_T = "nadeau-bengio corrected resampled t"
WILCOXON = "wilcoxon signed-rank + bootstrap of mean"
HOLM = "holm"
A_BETTER, B_BETTER, INSIDE_NOISE = "A better", "B better", "inside noise"
HOLDS, NOT_STABLE = "holds", "not stable across seeds"


def _paired(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{what}: model A has {a.size} values and model B {b.size}; "
                         "a paired comparison needs both on the same splits")
    if a.size < 2:
        raise ValueError(f"{what}: need at least 2 paired values, got {a.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{what}: values must be finite; a NaN SRCC means a broken split upstream")
    return a, b


def compare(a_split_srcc, b_split_srcc, *, level: float = 0.95, n_boot: int = 10000, seed: int = 0,
            test_train_ratio: float | None = None) -> dict:
    """Paired comparison of per-split SRCC; ``diff`` = mean(A - B) with interval [lo, hi] and p.

    ``test_train_ratio`` = n_test / n_train selects the corrected resampled t-test (see
    the module doc); without it, Wilcoxon + bootstrap. ``significant`` here is
    uncorrected (p < 1 - level and an interval that excludes 0); a table of many
    comparisons applies :func:`holm` to the p values instead.
    """
    a, b = _paired(a_split_srcc, b_split_srcc, "compare")
    d = a - b
    k = d.size
    diff = float(d.mean())
    tail = (1.0 - level) / 2.0
    if np.all(d == 0):
        # Both tests are undefined with no non-zero difference; the models tie on every split.
        p, lo, hi = 1.0, 0.0, 0.0
        method = "degenerate"
    elif test_train_ratio is not None:
        if not test_train_ratio > 0:
            raise ValueError(f"test_train_ratio must be n_test / n_train > 0, got {test_train_ratio}")
        se = math.sqrt((1.0 / k + test_train_ratio) * d.var(ddof=1))
        if se == 0.0:  # the same non-zero difference on every split: no doubt about its sign
            p, lo, hi = 0.0, diff, diff
        else:
            p = float(2.0 * stats.t.sf(abs(diff / se), df=k - 1))
            half = stats.t.ppf(1.0 - tail, df=k - 1) * se
            lo, hi = diff - half, diff + half
        method = CORRECTED_T
    else:
        p = float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
        rng = np.random.default_rng(seed)
        boot_means = d[rng.integers(0, k, size=(n_boot, k))].mean(axis=1)
        lo, hi = np.quantile(boot_means, [tail, 1.0 - tail])
        method = WILCOXON
    significant = bool(p < 1.0 - level and (lo > 0 or hi < 0))
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p": float(p), "significant": significant,
            "n_splits": int(k), "method": method}


def holm(p_values) -> np.ndarray:
    """Holm's (1979) step-down adjusted p values: reject p_holm < alpha keeps the family-wise error <= alpha.

    The i-th smallest of m p values is multiplied by (m - i), made monotone, and capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p values must lie in [0, 1], got {p[~((p >= 0) & (p <= 1))][:5].tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate(p[order] * (p.size - np.arange(p.size)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(scaled, 1.0)
    return adjusted


def verdict(diff: float, significant: bool) -> str:
    return (A_BETTER if diff > 0 else B_BETTER) if significant else INSIDE_NOISE


def seed_stability(significance: pd.DataFrame, variance: pd.DataFrame, statistic: str = "srcc") -> pd.Series:
    """For each verdict, whether it holds across seeds: ``holds``, ``not stable across seeds`` or "".

    ``variance`` is reports/variance.csv (one row per metric, e.g.
    ``within.contrique.synthetic-mixed.srcc``, with its ``mean`` and ``std`` over
    pretraining and split seeds). A verdict "A better" (or "B better") holds when the
    difference of the two rows' seed means has the verdict's sign and exceeds their
    combined seed std, sqrt(std_A^2 + std_B^2); otherwise another seed could level or
    reverse it. "" where there is no verdict ("inside noise") or a row's spread was
    not measured.
    """
    missing = {"metric", "mean", "std"} - set(variance.columns)
    if missing:
        raise ValueError(f"reports/variance.csv lacks the column(s) {sorted(missing)}; rerun "
                         "benchmarks/seed_spread.py to rewrite it")
    spread = variance.set_index("metric")[["mean", "std"]]

    def judge(row) -> str:
        if row["verdict"] == INSIDE_NOISE:
            return ""
        keys = [f"within.{row[m]}.{row['dataset']}.{statistic}" for m in ("model_a", "model_b")]
        if not all(key in spread.index for key in keys):
            return ""
        (mean_a, std_a), (mean_b, std_b) = (spread.loc[key].to_numpy(dtype=float) for key in keys)
        gap = mean_a - mean_b
        agrees = gap > 0 if row["verdict"] == A_BETTER else gap < 0
        return HOLDS if agrees and abs(gap) > math.hypot(std_a, std_b) else NOT_STABLE

    if significance.empty:
        return pd.Series([], dtype=object)
    return significance.apply(judge, axis=1)


def _bootstrap_srcc_diff(mos: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    n = mos.size
    chunk = max(1, MAX_BOOTSTRAP_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        mos_rank = stats.rankdata(mos[idx], axis=1)
        out[start:stop] = (rowwise_pearson(stats.rankdata(pred_a[idx], axis=1), mos_rank)
                           - rowwise_pearson(stats.rankdata(pred_b[idx], axis=1), mos_rank))
    return out


def image_bootstrap(mos, pred_a, pred_b, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Bootstrap over test images of the SRCC difference A - B.

    Each argument is one array (a single test set) or a list of arrays, one per
    split; with several splits every replicate resamples each split's test images
    and the statistic is the median over splits of the difference, like the headline.
    """
    if len(mos) and np.ndim(mos[0]) == 0:  # one test set given as a flat sequence
        mos, pred_a, pred_b = [mos], [pred_a], [pred_b]
    mos, pred_a, pred_b = list(mos), list(pred_a), list(pred_b)
    if not (len(mos) == len(pred_a) == len(pred_b)) or not mos:
        raise ValueError(f"need the same number (>0) of test sets for mos, A and B; got "
                         f"{len(mos)}, {len(pred_a)}, {len(pred_b)}")
    rng = np.random.default_rng(seed)
    observed, replicates = [], []
    for s, (m, a, b) in enumerate(zip(mos, pred_a, pred_b)):
        a, b = _paired(a, b, f"image_bootstrap split {s}")
        m = np.asarray(m, dtype=np.float64).ravel()
        if m.size != a.size:
            raise ValueError(f"image_bootstrap split {s}: {m.size} MOS values but {a.size} predictions")
        m_rank = stats.rankdata(m)
        observed.append(rowwise_pearson(stats.rankdata(a), m_rank) - rowwise_pearson(stats.rankdata(b), m_rank))
        replicates.append(_bootstrap_srcc_diff(m, a, b, n_boot, rng))
    diff = float(np.median(observed))
    boot = np.median(np.stack(replicates), axis=0)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    # Two-sided bootstrap p: how often the resampled difference lands on the other side of 0.
    p = float(min(1.0, 2.0 * min(np.mean(boot <= 0), np.mean(boot >= 0))))
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p": p,
            "significant": bool(lo > 0 or hi < 0), "n_boot": int(n_boot), "n_splits": len(mos)}


def common_test(run_a, run_b) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per split of two :class:`~iqabench.evaluation.protocol.SplitRun` on the same splits: the MOS and both
    runs' predictions on the test images *both* define, and that count over the runs' mean train size.

    A row undefined on some images is scored without them (protocol.py); pairing its split SRCC with
    another row's, measured on more images, would credit it for dropping hard ones. The split's order is
    kept, so with nothing dropped these are the runs' own test sets and predictions."""
    different = ValueError("the two runs used different splits; evaluate both models with the same "
                           "content ids, n_splits, fractions and seed before comparing")
    if len(run_a.splits) != len(run_b.splits) or not all(
            _same_split(da, db) for da, db in zip(run_a.drawn or run_a.splits, run_b.drawn or run_b.splits)):
        raise different
    paired = []
    for sa, sb, pa, pb in zip(run_a.splits, run_b.splits, run_a.test_pred, run_b.test_pred):
        keep_a, keep_b = np.isin(sa.test, sb.test), np.isin(sb.test, sa.test)
        if not np.array_equal(sa.test[keep_a], sb.test[keep_b]):
            raise different
        paired.append((run_a.scores[sa.test[keep_a]], np.asarray(pa)[keep_a], np.asarray(pb)[keep_b],
                       int(keep_a.sum()) / ((len(sa.train) + len(sb.train)) / 2)))
    if not np.array_equal(run_a.scores, run_b.scores):
        raise ValueError("the two runs were scored against different MOS; use the same manifest")
    small = [s for s, (mos, _, _, _) in enumerate(paired) if mos.size < 3]
    if small:
        raise ValueError(f"split {small[0]} keeps {paired[small[0]][0].size} test image(s) that both models "
                         "define; a paired comparison needs at least 3")
    return paired


def _same_split(a, b) -> bool:
    # The splits as drawn, before either run dropped its undefined images: a seed alone does not pin the
    # parts (fractions, content ids and official splits change them too).
    return a.seed == b.seed and all(np.array_equal(getattr(a, part), getattr(b, part))
                                    for part in ("train", "val", "test"))

