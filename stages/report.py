"""Stage `report`: tables and figures in reports/, and one MLflow run with everything.

    python stages/report.py  ->  reports/results.md, reports/cross_srcc.png, reports/scatter.png,
                                 reports/pretrain_loss.png (+ an MLflow run)
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from iqabench import io, params, reporting, tracking

R = Path("reports")


def timings_markdown() -> tuple[str, float]:
    rows = [json.loads(p.read_text()) for p in sorted((R / "timings").glob("*.json"))]
    total = sum(r["seconds"] for r in rows)
    lines = ["| stage | seconds |", "|---|---:|"] + [f"| {r['stage']} | {r['seconds']:.1f} |" for r in rows]
    machine = rows[0]["machine"] if rows else "unknown"
    return "\n".join(lines + [f"| **total (compute, excluding DVC overhead)** | **{total:.1f}** |", "",
                              f"Machine: {machine}."]) + "\n", total


def section(path: Path) -> str:
    """A stage's markdown without its own top-level title (results.md gives each a heading)."""
    lines = path.read_text().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip() + "\n"


def main() -> None:
    cfg = params.section("report")
    within, cross = pd.read_csv(R / "within.csv"), pd.read_csv(R / "cross.csv")
    significance = pd.read_csv(R / "significance.csv")
    # Measured by benchmarks/seed_spread.py, outside the pipeline; without it the report says spread is unknown.
    variance = pd.read_csv(R / "variance.csv") if (R / "variance.csv").is_file() else None
    predictions = pd.read_csv("data/eval/predictions.csv")
    histories = {"contrique": pd.read_csv("data/models/pretrain_history.csv"),
                 "arniqa": pd.read_csv("data/models/pretrain-arniqa_history.csv")}
    figures = [reporting.heatmap(cross, R / "cross_srcc.png"), reporting.scatter(predictions, R / "scatter.png"),
               reporting.loss_curve(histories, R / "pretrain_loss.png")]
    timings, total = timings_markdown()
    commit = tracking.git_commit()
    provenance = (f"Commit `{commit}`, dvc.lock `{tracking.file_hash('dvc.lock')}`, seed {cfg['seed']}; "
                  f"reproduce with `dvc repro`. Scores of `synthetic-*` sets are pseudo-MOS from full-reference "
                  f"metrics, not human ratings.")
    io.write_text(R / "results.md", "\n".join([
        "# iqabench results", "", provenance, "",
        "## Within-dataset (median over content-disjoint random splits)", "", reporting.within_markdown(within, significance, variance),
        "## Cross-dataset (train on all of A, test on all of B)", "", reporting.cross_markdown(cross),
        "![cross-dataset SRCC](cross_srcc.png)", "",
        "## End-to-end fine-tuning vs the frozen readout", "", section(R / "finetune.md"), "",
        "## Mixed-dataset training (MonotonicIQA vs pooled)", "", section(R / "mixed.md"), "",
        "## Pipeline wall time", "", timings]))
    tags = {"git_commit": commit, "dvc_lock": tracking.file_hash("dvc.lock"),
            **{f"manifest.{ds}": tracking.file_hash(Path("data/prepared") / ds / "manifest.csv") for ds in cfg["datasets"]}}
    metrics = json.loads((R / "metrics.json").read_text())
    per_model = {m: {"within": metrics["within"].get(m, {}), "cross": metrics["cross"].get(m, {})} for m in cfg["models"]}
    run_id = tracking.log_study(
        experiment=cfg["experiment"], run_name=f"repro {commit[:8]}", params=params.load(),
        metrics={**metrics, "pipeline_seconds": total}, per_model=per_model,
        tables={"within": within, "cross": cross, "significance": significance,
                "mixed": pd.read_csv(R / "mixed.csv"), "finetune": pd.read_csv(R / "finetune.csv")},
        artifacts=[*figures, R / "results.md", R / "distortions.png", Path("data/models/encoder.pt"),
                   Path("data/models/encoder-arniqa.pt")], tags=tags,
        eval_params=params.section("evaluate"))
    if run_id:
        print(f"MLflow run {run_id} in {tracking.tracking_uri()}; open it with `mlflow ui --backend-store-uri "
              f"{tracking.tracking_uri()}` (http://127.0.0.1:5000)")
    print((R / "results.md").read_text())


if __name__ == "__main__":
    main()
