"""The `mixed` stage's tables: medians over splits, monotonic vs pooled paired, and the markdown report.

Kept apart from :mod:`iqabench.mixed` (the models and the training loop) so that each stays one concern.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import compare
from .evaluation.significance import holm
from .mixed import METHODS


def summarise(per_split: pd.DataFrame) -> pd.DataFrame:
    """Median and IQR over splits of each (dataset, method), as the protocol reports."""
    rows = []
    for (ds, method), group in per_split.groupby(["dataset", "method"], sort=False):
        row = {"dataset": ds, "method": method, "n_splits": len(group), "n_train": int(group["n_train"].median()),
               "n_test": int(group["n_test"].median()), "n_missing": int(group["n_missing"].max())}
        for metric in ("srcc", "plcc", "krcc", "rmse"):
            values = group[metric].to_numpy(dtype=np.float64)
            row[metric] = float(np.median(values))
            row[f"{metric}_q25"], row[f"{metric}_q75"] = (float(q) for q in np.quantile(values, [0.25, 0.75]))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_srcc(per_split: pd.DataFrame, a: str = "monotonic", b: str = "pooled", level: float = 0.95) -> pd.DataFrame:
    """Per dataset, method a's SRCC against method b's, paired over the same splits.

    Nadeau & Bengio's corrected resampled t-test (the splits' training sets overlap, so a plain paired test is
    overconfident) with Holm's correction across the datasets of the table, as the within table does.
    """
    rows = []
    for ds, group in per_split.groupby("dataset", sort=False):
        sa = group[group["method"] == a].sort_values("split")
        sb = group[group["method"] == b].sort_values("split")
        if len(sa) > 1 and len(sa) == len(sb):
            ratio = float(sa["n_test"].median()) / float(sa["n_train"].median())
            rows.append({"dataset": ds, "a": a, "b": b,
                         **compare(sa["srcc"].to_numpy(), sb["srcc"].to_numpy(), level=level, test_train_ratio=ratio)})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["p_holm"] = holm(frame["p"].to_numpy())
        frame["significant"] = (frame["p_holm"] < 1.0 - level) & ((frame["lo"] > 0) | (frame["hi"] < 0))
    return frame


def ridge_rows(within: pd.DataFrame, model: str) -> pd.DataFrame:
    """The protocol's single-dataset ridge medians for ``model`` (reports/within.csv) as method 'ridge'."""
    chosen = within[within["model"] == model]
    keep = ["dataset", "n_splits", "n_missing", "srcc", "srcc_q25", "srcc_q75", "plcc", "plcc_q25", "plcc_q75"]
    return chosen[[c for c in keep if c in chosen.columns]].assign(method="ridge")


def markdown(summary: pd.DataFrame, paired: pd.DataFrame, *, model: str, logistic: str) -> str:
    """The report: one row per (dataset, method), then monotonic vs pooled paired over splits."""
    order = {m: i for i, m in enumerate((*METHODS, "ridge"))}
    lines = [f"Features: **{model}**. Median over the protocol's content-disjoint splits (IQR of SRCC). "
             "monotonic = MonotonicIQA (shared MLP + one monotone transformer per dataset, trained on all datasets); "
             "pooled = the same MLP on all datasets' scores concatenated; single = the same MLP on one dataset; "
             "ridge = the protocol's single-dataset ridge (reports/within.csv).", "",
             f"| dataset | method | train images | SRCC (IQR) | PLCC ({logistic} fit) |", "|---|---|---:|---|---:|"]
    datasets = {ds: i for i, ds in enumerate(dict.fromkeys(summary["dataset"]))}  # params order, not alphabetical
    ranked = summary.assign(_ds=summary["dataset"].map(datasets), _order=summary["method"].map(order)).sort_values(
        ["_ds", "_order"], kind="stable")
    for r in ranked.to_dict("records"):
        n_train = "" if pd.isna(r.get("n_train")) else int(r["n_train"])
        lines.append(f"| {r['dataset']} | {r['method']} | {n_train} | {r['srcc']:.3f} "
                     f"({r['srcc_q25']:.3f}-{r['srcc_q75']:.3f}) | {r['plcc']:.3f} |")
    missing = summary[summary["method"] != "ridge"].groupby("dataset", sort=False)["n_missing"].max()
    missing = missing[missing > 0]
    if len(missing):
        lines += ["", f"Left out because the features of {model} are undefined there (NaN or infinity), from every "
                  "split and every method, as the protocol does: " +
                  "; ".join(f"{ds}: {int(n)} image(s)" for ds, n in missing.items()) + "."]
    if not paired.empty:
        lines += ["", "Monotonic minus pooled, paired over the same splits (mean SRCC difference, 95% interval, "
                  "Nadeau-Bengio corrected resampled t-test, p Holm-corrected across datasets):", "",
                  "| dataset | monotonic - pooled | 95% interval | p (Holm) | verdict |",
                  "|---|---:|---|---:|---|"]
        for r in paired.to_dict("records"):
            verdict = ("monotonic better" if r["diff"] > 0 else "pooled better") if r["significant"] else "inside noise"
            lines.append(f"| {r['dataset']} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] | "
                         f"{r['p_holm']:.3g} | {verdict} |")
    return "\n".join(lines) + "\n"
