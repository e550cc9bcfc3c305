"""Tables and figures for ``reports/``: markdown, heatmaps, scatter plots, loss curves.

Everything here reads the `evaluate` stage's CSVs; nothing is typed by hand.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import io  # noqa: E402
from .evaluation.significance import INSIDE_NOISE, NOT_STABLE, seed_stability  # noqa: E402


def within_markdown(within: pd.DataFrame, significance: pd.DataFrame, variance: pd.DataFrame | None = None) -> str:
    """Median SRCC / PLCC / KRCC with the IQR of SRCC; the paired comparisons and their verdicts.

    ``variance`` (reports/variance.csv, from benchmarks/seed_spread.py) adds each row's SRCC spread over
    seeds and checks every verdict across seeds; without it the table says that was not measured.
    """
    logistic = within["logistic"].iloc[0] if "logistic" in within else "?"
    seed_std = _seed_std(variance)
    spread_head, spread_rule = (" SRCC seed std |", "---:|") if seed_std is not None else ("", "")
    lines = [f"| model | dataset | images | SRCC (IQR) |{spread_head} PLCC ({logistic} fit) | KRCC | RMSE |",
             f"|---|---|---:|---|{spread_rule}---:|---:|---:|"]
    for r in within.sort_values(["dataset", "srcc"], ascending=[True, False]).to_dict("records"):
        spread = ""
        if seed_std is not None:
            std = seed_std.get(f"within.{r['model']}.{r['dataset']}.srcc")
            spread = f" {std:.3f} |" if std is not None else " — |"
        lines.append(f"| {r['model']} | {r['dataset']} | {r['n_images']} | {r['srcc']:.3f} "
                     f"({r['srcc_q25']:.3f}-{r['srcc_q75']:.3f}) |{spread} {r['plcc']:.3f} | {r['krcc']:.3f} | "
                     f"{r['rmse']:.3f} |")
    lines += ["", missing_line(within)]
    if not significance.empty:
        lines += ["", *significance_lines(significance, variance)]
    return "\n".join(lines) + "\n"


def missing_line(within: pd.DataFrame) -> str:
    """How many images each row skipped because its features are undefined there (NaN; the protocol drops them)."""
    gaps = within[within["n_missing"] > 0] if "n_missing" in within else within.iloc[:0]
    if gaps.empty:
        return "Images with undefined features (dropped for that row only): none."
    listed = "; ".join(f"{r['model']} on {r['dataset']}: {int(r['n_missing'])} of {r['n_images']}"
                       for r in gaps.to_dict("records"))
    return f"Images with undefined features (dropped for that row only, the other rows keep them): {listed}."


def _seed_std(variance: pd.DataFrame | None) -> dict | None:
    if variance is None:
        return None
    return dict(zip(variance["metric"], variance["std"]))


def _p(value: float) -> str:
    # significance.csv keeps 4 decimals: a p below that is printed as a bound, not as a zero.
    return "<0.0001" if value < 1e-4 else f"{value:.3g}"


def significance_lines(significance: pd.DataFrame, variance: pd.DataFrame | None = None) -> list[str]:
    """The paired-comparison table under the within table: which test, which correction, what changed."""
    n = len(significance)
    differs = significance["verdict"] != significance["verdict_wilcoxon"]
    changed, lost = int(differs.sum()), int((differs & (significance["verdict"] == INSIDE_NOISE)).sum())
    lines = [f"Paired comparison over the same splits: mean SRCC difference A - B, its 95% interval and p from "
             f"Nadeau & Bengio's corrected resampled t-test (the variance over splits is inflated by "
             f"1/k + n_test/n_train, because random splits share training images); the verdict is taken at 5% "
             f"family-wise error after Holm's correction across all {n} comparisons of this table (every dataset), "
             f"so an interval (uncorrected, 95%) that excludes 0 can still be inside the noise. "
             f"Against the former uncorrected Wilcoxon signed-rank test on the same per-split SRCCs, "
             f"{changed} of {n} verdicts changed ({lost} now inside the noise, {changed - lost} newly called).", ""]
    stability = None
    if variance is None:
        lines += ["Seed spread not measured here (no reports/variance.csv): the verdicts are not checked across "
                  "pretraining seeds, which can move the pretrained rows more than the splits do "
                  "(`python benchmarks/seed_spread.py` measures it).", ""]
    else:
        stability = seed_stability(significance, variance)
        n_seeds = int(variance["n_seeds"].max()) if "n_seeds" in variance and len(variance) else 0
        unstable = int((stability == NOT_STABLE).sum())
        lines += [f"Across seeds (reports/variance.csv, {n_seeds} seeds of pretraining and splits, datasets fixed): a "
                  f"verdict *holds* when the difference of the two rows' seed means has its sign and exceeds their "
                  f"combined seed std; {unstable} verdict(s) are *not stable across seeds*.", ""]
    seeds_head, seeds_rule = (" across seeds |", "---|") if stability is not None else ("", "")
    lines += [f"| dataset | A vs B | A - B | 95% interval | p | p (Holm) | verdict |{seeds_head}",
              f"|---|---|---:|---|---:|---:|---|{seeds_rule}"]
    for i, r in enumerate(significance.to_dict("records")):
        seeds = f" {stability.iloc[i] or '—'} |" if stability is not None else ""
        lines.append(f"| {r['dataset']} | {r['model_a']} vs {r['model_b']} | {r['diff']:+.3f} | "
                     f"[{r['lo']:+.3f}, {r['hi']:+.3f}] | {_p(r['p_raw'])} | {_p(r['p_holm'])} | {r['verdict']} |"
                     f"{seeds}")
    return lines


def cross_matrix(cross: pd.DataFrame, model: str, metric: str = "srcc") -> pd.DataFrame:
    """Rows = training set, columns = test set; the diagonal is the within-dataset median."""
    sub = cross[cross["model"] == model]
    order = list(dict.fromkeys(sub["train"]))
    return sub.pivot(index="train", columns="test", values=metric).reindex(index=order, columns=order)


def cross_markdown(cross: pd.DataFrame, variance: pd.DataFrame | None = None) -> str:
    """One SRCC matrix per model; with ``variance`` (reports/variance.csv) each cell gains its seed std (± s)."""
    seed_std = _seed_std(variance) or {}

    def cell(model: str, train: str, test: str, value: float) -> str:
        key = f"within.{model}.{train}.srcc" if train == test else f"cross.{model}.{train}->{test}.srcc"
        std = seed_std.get(key)
        # A seed std of 0 (an untrained row tested on all of B) is no "± 0.000": the cell still has its test
        # images' sampling error, which no seed measures.
        shown = std is not None and std > 0 and np.isfinite(value)
        return f"{value:.3f}" + (f" ± {std:.3f}" if shown else "")

    spread = ("; ± = std over the seeds of reports/variance.csv, left out where the seeds move nothing (the test "
              "images' sampling error remains)" if seed_std else "")
    parts = []
    for model in dict.fromkeys(cross["model"]):
        matrix = cross_matrix(cross, model)
        parts.append(f"**{model}** (SRCC; rows = trained on, columns = tested on; diagonal = within-dataset median"
                     f"{spread})\n")
        parts.append("| train \\ test | " + " | ".join(matrix.columns) + " |")
        parts.append("|---|" + "---:|" * len(matrix.columns))
        for name, row in matrix.iterrows():
            parts.append(f"| {name} | " + " | ".join(cell(model, name, test, v) for test, v in row.items()) + " |")
        parts.append("")
    return "\n".join(parts)


def leaderboard(within: pd.DataFrame, metric: str = "srcc") -> pd.DataFrame:
    """Models (rows, in the study's order) x datasets (columns): the within-dataset median ``metric``."""
    models, datasets = list(dict.fromkeys(within["model"])), list(dict.fromkeys(within["dataset"]))
    table = within.pivot(index="model", columns="dataset", values=metric).reindex(index=models, columns=datasets)
    table.columns.name = None
    return table


def best_line(table: pd.DataFrame, full_reference=frozenset()) -> str:
    """Who wins each column, and the best no-reference row where a full-reference one wins (it sees the
    pristine image, so it answers another question). First, so a folded view (MLflow's note) still shows it."""
    parts = []
    for dataset, column in table.items():
        column = column.dropna()
        if column.empty:
            continue
        part = f"{dataset} **{column.idxmax()}** {column.max():.3f}"
        nr = column.drop([m for m in column.index if m in full_reference])
        if column.idxmax() in full_reference and not nr.empty:
            part += f" (no-reference: {nr.idxmax()} {nr.max():.3f})"
        parts.append(part)
    return "Best: " + "; ".join(parts) + "." if parts else ""


def leaderboard_markdown(within: pd.DataFrame, metric: str = "srcc", full_reference=frozenset()) -> str:
    """The leaderboard as markdown: who wins each column first (``best_line``), then the table with the best value
    of each column in bold and "—" where a row has no cell."""
    table = leaderboard(within, metric)
    best = table.max(axis=0)
    lines = [best_line(table, full_reference), ""]
    table = table.loc[table.mean(axis=1).sort_values(ascending=False, kind="stable").index]  # best first
    lines += ["| model | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for model, row in table.iterrows():
        cells = ["—" if pd.isna(v) else f"**{v:.3f}**" if v == best[ds] else f"{v:.3f}" for ds, v in row.items()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\nMedian {metric.upper()} over the protocol's splits; rows by their mean over the "
                               "datasets they have; best per column in bold; "
                               "— = no cell (full-reference rows need a reference image). Every row is read out alike "
                               "(params.yaml `evaluate`), not by each paper's own protocol (docs/protocol.md).\n")


def cross_wide(cross: pd.DataFrame, metric: str = "srcc") -> pd.DataFrame:
    """Models (rows) x ``train->test`` pairs (columns; A->A is the within-dataset median)."""
    frame = cross.assign(pair=cross["train"] + "->" + cross["test"])
    datasets = list(dict.fromkeys([*cross["train"], *cross["test"]]))
    pairs = [f"{a}->{b}" for a in datasets for b in datasets if f"{a}->{b}" in set(frame["pair"])]
    models = list(dict.fromkeys(frame["model"]))
    return frame.pivot(index="model", columns="pair", values=metric).reindex(index=models, columns=pairs)


def heatmap(cross: pd.DataFrame, path: str | Path) -> Path:
    """One heatmap of every model and train->test pair (A->A: within), so runs compare figure to figure."""
    table = cross_wide(cross)
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.0 * len(table.columns), 0.9 + 0.42 * len(table.index)))
    im = ax.imshow(np.ma.masked_invalid(values), vmin=-1 if np.nanmin(values, initial=0) < 0 else 0, vmax=1,
                   cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(table.columns)), [c.replace("->", " →\n") for c in table.columns], fontsize=7)
    ax.set_yticks(range(len(table.index)), table.index, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "—" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="black" if np.isnan(v) or v >= 0.6 else "white")
    ax.set_title("SRCC, trained on (top line) -> tested on; A -> A = within-dataset median", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save(fig, path)


def srcc_figure(within: pd.DataFrame, path: str | Path, variance: pd.DataFrame | None = None,
                full_reference=frozenset()) -> Path:
    """Who wins where, and by more than the noise? One panel per dataset, models sorted by median SRCC: the
    dot is the median over splits, the bar the splits' IQR, the whisker ± the seed std (reports/variance.csv)
    where it was measured. Full-reference rows are hollow: they read the reference image, the others do not."""
    seed_std = _seed_std(variance) or {}
    datasets = list(dict.fromkeys(within["dataset"]))
    n_models = within["model"].nunique()
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 0.9 + 0.32 * n_models), squeeze=False)
    lo = min(0.0, float(within["srcc_q25"].min()) - 0.05)
    for ax, ds in zip(axes[0], datasets):
        part = within[within["dataset"] == ds].sort_values("srcc")
        y = np.arange(len(part))
        ax.hlines(y, part["srcc_q25"], part["srcc_q75"], color="tab:blue", alpha=0.35, linewidth=6)
        std = np.array([seed_std.get(f"within.{m}.{ds}.srcc", np.nan) for m in part["model"]])
        ax.errorbar(part["srcc"], y, xerr=np.nan_to_num(std), fmt="none", ecolor="black", elinewidth=1, capsize=3)
        hollow = part["model"].isin(full_reference).to_numpy()
        ax.scatter(part["srcc"][~hollow], y[~hollow], color="tab:blue", zorder=3, s=22)
        ax.scatter(part["srcc"][hollow], y[hollow], facecolors="white", edgecolors="tab:blue", zorder=3, s=22)
        ax.set_yticks(y, part["model"], fontsize=8)
        ax.set_xlim(lo, 1.0)
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("SRCC", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    whisker = "whisker ± seed std" if seed_std else "seed std not measured"
    fig.suptitle(f"within-dataset SRCC: median over splits (dot), IQR over splits (bar), {whisker}; "
                 "hollow = full-reference", fontsize=8)
    return _save(fig, path)


def plot_data(within: pd.DataFrame, predictions: pd.DataFrame, root: str | Path, split: int = 0) -> list[Path]:
    """Small CSVs for `dvc plots` (declared in dvc.yaml): ``srcc/<dataset>.csv`` (model, srcc) and
    ``scatter/<dataset>--<model>.csv`` (score, prediction on test split ``split``).

    File names replace ``:`` (``fr:gmsd``) by ``-``, which not every file system allows; the model id
    inside each file is unchanged.
    """
    root, written = Path(root), []
    for ds, part in within.groupby("dataset", sort=False):
        written.append(io.write_csv(root / "srcc" / f"{ds}.csv", part[["model", "srcc"]], index=False))
    sub = predictions[predictions["split"] == split]
    for (ds, model), part in sub.groupby(["dataset", "model"], sort=False):
        name = f"{ds}--{model.replace(':', '-')}.csv"
        part = part.assign(image=part["image"].map(io.portable_path))
        written.append(io.write_csv(root / "scatter" / name, part[["image", "score", "prediction"]].round(4),
                                    index=False))
    for stale in {*root.glob("srcc/*.csv"), *root.glob("scatter/*.csv")} - set(written):
        stale.unlink()  # a dataset or model dropped from params.yaml
    return written


def scatter(predictions: pd.DataFrame, path: str | Path, split: int = 0) -> Path:
    """Prediction against (normalised) MOS for each model x dataset, on one test split."""
    sub = predictions[predictions["split"] == split]
    models, datasets = list(dict.fromkeys(sub["model"])), list(dict.fromkeys(sub["dataset"]))
    fig, axes = plt.subplots(len(models), len(datasets), figsize=(3.4 * len(datasets), 3.2 * len(models)),
                             squeeze=False)
    for i, model in enumerate(models):
        for j, ds in enumerate(datasets):
            part = sub[(sub["model"] == model) & (sub["dataset"] == ds)]
            ax = axes[i][j]
            ax.scatter(part["score"], part["prediction"], s=6, alpha=0.6)
            ax.set_title(f"{model} / {ds}", fontsize=9)
            ax.set_xlabel(f"MOS (normalised), test split {split}", fontsize=8)  # a suptitle overlapped the titles
            ax.set_ylabel("prediction", fontsize=8)
    return _save(fig, path)


def loss_curve(histories: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """One line per pretrained encoder: ``{"contrique": history, ...}`` with ``step`` and ``loss`` columns."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, history in histories.items():
        ax.plot(history["step"], history["loss"], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss (NT-Xent)")
    ax.set_title("pretraining loss", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def without_images(markdown: str) -> str:
    """``markdown`` with each image link as a line naming the file: MLflow's preview of a logged .md shows
    ``![...](srcc.png)`` as literal text (it renders no relative image), while the figure is an artifact beside it."""
    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", r"*Figure `\2` (an artifact of this run): \1.*", markdown)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
