"""The whole study: the protocol for every model on every dataset, and every cross-dataset pair.

Pure functions from features and manifests to tables; the `evaluate` stage
writes them. Every model is evaluated on the same splits of a dataset (the
splits depend only on the dataset's content ids and the seed), so models are
compared pairwise: Nadeau & Bengio's corrected resampled t-test over the splits,
with Holm's correction across every comparison of the within table (all datasets
together: the family a reader scans), at 5 % family-wise error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from . import io
from .evaluation import compare, cross_dataset_many, run_splits, score_run, summarise
from .evaluation.metrics import srcc
from .evaluation.significance import HOLM, common_test, holm, verdict
from .evaluation.protocol import fixed_splits

HEADLINE = ("srcc", "plcc", "krcc", "rmse")
SIGNIFICANCE_COLUMNS = ["dataset", "model_a", "model_b", "diff", "lo", "hi", "p_raw", "p_holm", "significant",
                        "verdict", "verdict_wilcoxon", "n_splits", "test_train_ratio", "method", "correction"]
FAMILY_ALPHA = 0.05


@dataclass
class StudyResult:
    within: pd.DataFrame        # one row per (model, dataset): median and IQR of each metric
    per_split: pd.DataFrame     # one row per (model, dataset, split)
    cross: pd.DataFrame         # one row per (model, train, test); train == test is the within median
    significance: pd.DataFrame  # one row per (dataset, model A, model B): paired SRCC difference
    predictions: pd.DataFrame   # test predictions of every split: image, score, prediction
    config: dict = field(default_factory=dict)


def run(features: dict[str, dict[str, np.ndarray]], manifests: dict[str, pd.DataFrame], cfg: dict) -> StudyResult:
    """``features[dataset][model]`` is N x D, aligned with ``manifests[dataset]``.

    A model absent from a dataset's features (a full-reference row on a set
    without references) has no row there and no cross pair involving it.
    """
    models = list(cfg["models"])
    within, per_split, preds, sig, cross = [], [], [], [], []
    chosen_alpha = {}  # (model, dataset) -> the alpha the within-dataset protocol settled on
    for ds, frame in manifests.items():
        kind, splits = fixed_splits(ds, frame, official=cfg.get("official_splits", False),
                                    arniqa_splits=cfg.get("arniqa_splits", ""))
        runs = {}
        for model in [m for m in models if m in features[ds]]:
            run = run_splits(
                features[ds][model], frame, n_splits=cfg["n_splits"], test_frac=cfg["test_frac"],
                val_frac=cfg["val_frac"], seed=cfg["seed"], alphas=cfg["alphas"],
                standardize=cfg["standardize"], alpha_rule=cfg.get("alpha_rule", "median"), splits=splits,
                where=f"dataset {ds!r}, model {model!r}")
            scored = score_run(run, logistic=cfg["logistic"], where=f"dataset {ds!r}, model {model!r}").assign(
                model=model, dataset=ds)
            per_split.append(scored)
            runs[model] = run
            chosen_alpha[model, ds] = float(np.median(run.alphas))
            summary = summarise(scored)
            row = {"model": model, "dataset": ds, "n_images": len(frame), "n_missing": run.n_missing,
                   "n_splits": summary["n_splits"], "splits": kind, "logistic": cfg["logistic"]}
            for metric in HEADLINE:
                row[metric] = summary[metric]["median"]
                row[f"{metric}_q25"], row[f"{metric}_q75"] = summary[metric]["q25"], summary[metric]["q75"]
            within.append(row)
            images = [io.portable_path(p) for p in frame["image"]]  # data/eval/ must hash alike in every clone
            for s, (split, pred) in enumerate(zip(run.splits, run.test_pred)):
                preds.append(pd.DataFrame({"model": model, "dataset": ds, "split": s,
                                           "image": np.asarray(images, dtype=object)[split.test],
                                           "score": run.scores[split.test], "prediction": pred}))
        for a, b in combinations(runs, 2):
            if len(runs[a].splits) > 1:  # an official split is a single split: nothing to pair
                sig.append(_paired_row(ds, a, b, runs[a], runs[b], cfg["seed"]))
    for model in models:
        for a in [ds for ds in manifests if model in features[ds]]:
            tests = [b for b in manifests if b != a and model in features[b]]
            if not tests:
                continue
            # Train on A with the alpha A's own protocol chose: B's labels never pick it.
            results = cross_dataset_many(features[a][model], manifests[a],
                                         [(features[b][model], manifests[b]) for b in tests],
                                         alpha=chosen_alpha[model, a], standardize=cfg["standardize"],
                                         logistic=cfg["logistic"])
            cross.extend({"model": model, "train": a, "test": b, **metrics} for b, metrics in zip(tests, results))
        for row in within:
            if row["model"] == model:
                cross.append({"model": model, "train": row["dataset"], "test": row["dataset"],
                              **{m: row[m] for m in HEADLINE}, "within": True})
    cross_frame = pd.DataFrame(cross)
    cross_frame["within"] = cross_frame.get("within", False).fillna(False).astype(bool)
    return StudyResult(pd.DataFrame(within), pd.concat(per_split, ignore_index=True), cross_frame,
                       holm_verdicts(pd.DataFrame(sig)), pd.concat(preds, ignore_index=True), dict(cfg))


def _paired_row(ds: str, a: str, b: str, run_a, run_b, seed: int) -> dict:
    """One comparison, over the test images both rows define (a row undefined on some images is paired on
    the rest): the corrected t-test's numbers, and the old Wilcoxon verdict only for the changed count."""
    try:
        paired = common_test(run_a, run_b)
    except ValueError as exc:
        raise ValueError(f"dataset {ds!r}, comparing {a!r} with {b!r}: {exc}") from None
    srcc_a = [srcc(pred_a, mos) for mos, pred_a, _, _ in paired]
    srcc_b = [srcc(pred_b, mos) for mos, _, pred_b, _ in paired]
    ratio = float(np.mean([ratio for *_, ratio in paired]))
    result = compare(srcc_a, srcc_b, test_train_ratio=ratio, level=1 - FAMILY_ALPHA)
    old = compare(srcc_a, srcc_b, seed=seed, level=1 - FAMILY_ALPHA)
    return {"dataset": ds, "model_a": a, "model_b": b, "diff": result["diff"], "lo": result["lo"],
            "hi": result["hi"], "p_raw": result["p"], "n_splits": result["n_splits"], "test_train_ratio": ratio,
            "method": result["method"], "verdict_wilcoxon": verdict(old["diff"], old["significant"])}


def holm_verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p values and verdicts across all rows (one family: the within table)."""
    if rows.empty:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    rows = rows.assign(p_holm=holm(rows["p_raw"].to_numpy()), correction=f"{HOLM} over {len(rows)} comparisons")
    rows["significant"] = rows["p_holm"] < FAMILY_ALPHA
    rows["verdict"] = [verdict(d, s) for d, s in zip(rows["diff"], rows["significant"])]
    return rows[SIGNIFICANCE_COLUMNS]


def metrics_dict(result: StudyResult) -> dict:
    """The DVC metrics: within-dataset medians and cross-dataset SRCC, nested by model."""
    out: dict = {"within": {}, "cross": {}}
    for row in result.within.to_dict("records"):
        out["within"].setdefault(row["model"], {})[row["dataset"]] = {m: round(row[m], 4) for m in HEADLINE}
    for row in result.cross[~result.cross["within"]].to_dict("records"):
        out["cross"].setdefault(row["model"], {})[f"{row['train']}->{row['test']}"] = {
            "srcc": round(row["srcc"], 4), "plcc": round(row["plcc"], 4)}
    return out
