"""Tables and figures for ``reports/``: markdown, heatmaps, scatter plots, loss curves.

Everything here reads the `evaluate` stage's CSVs; nothing is typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import io  # noqa: E402


def within_markdown(within: pd.DataFrame, significance: pd.DataFrame) -> str:
    """Median SRCC / PLCC / KRCC with the IQR of SRCC; marks comparisons inside noise."""
    logistic = within["logistic"].iloc[0] if "logistic" in within else "?"
    lines = [f"| model | dataset | images | SRCC (IQR) | PLCC ({logistic} fit) | KRCC | RMSE |",
             "|---|---|---:|---|---:|---:|---:|"]
    for r in within.sort_values(["dataset", "srcc"], ascending=[True, False]).to_dict("records"):
        lines.append(f"| {r['model']} | {r['dataset']} | {r['n_images']} | {r['srcc']:.3f} "
                     f"({r['srcc_q25']:.3f}-{r['srcc_q75']:.3f}) | {r['plcc']:.3f} | {r['krcc']:.3f} | {r['rmse']:.3f} |")
    if not significance.empty:
        lines += ["", "Paired comparison over the same splits (mean SRCC difference, 95% interval, Wilcoxon p):", "",
                  "| dataset | A vs B | A - B | 95% interval | p | verdict |", "|---|---|---:|---|---:|---|"]
        for r in significance.to_dict("records"):
            verdict = ("A better" if r["diff"] > 0 else "B better") if r["significant"] else "inside noise"
            lines.append(f"| {r['dataset']} | {r['model_a']} vs {r['model_b']} | {r['diff']:+.3f} | "
                         f"[{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['p']:.3g} | {verdict} |")
    return "\n".join(lines) + "\n"


def cross_matrix(cross: pd.DataFrame, model: str, metric: str = "srcc") -> pd.DataFrame:
    """Rows = training set, columns = test set; the diagonal is the within-dataset median."""
    sub = cross[cross["model"] == model]
    order = list(dict.fromkeys(sub["train"]))
    return sub.pivot(index="train", columns="test", values=metric).reindex(index=order, columns=order)


def cross_markdown(cross: pd.DataFrame) -> str:
    parts = []
    for model in dict.fromkeys(cross["model"]):
        matrix = cross_matrix(cross, model)
        parts.append(f"**{model}** (SRCC; rows = trained on, columns = tested on; diagonal = within-dataset median)\n")
        parts.append("| train \\ test | " + " | ".join(matrix.columns) + " |")
        parts.append("|---|" + "---:|" * len(matrix.columns))
        for name, row in matrix.iterrows():
            parts.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        parts.append("")
    return "\n".join(parts)


def heatmap(cross: pd.DataFrame, path: str | Path) -> Path:
    models = list(dict.fromkeys(cross["model"]))
    cols = min(4, len(models))  # wrap: a row of eight panels is too wide to read
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models):
        matrix = cross_matrix(cross, model)
        im = ax.imshow(matrix.to_numpy(dtype=float), vmin=-1 if (matrix < 0).any().any() else 0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(matrix.index)), matrix.index, fontsize=8)
        for (i, j), v in np.ndenumerate(matrix.to_numpy(dtype=float)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
        ax.set_title(f"{model}: SRCC, train (rows) -> test (cols)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


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
            ax.set_xlabel("MOS (normalised)", fontsize=8)
            ax.set_ylabel("prediction", fontsize=8)
    fig.suptitle(f"test split {split}", fontsize=9)
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


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
