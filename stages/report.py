"""Stage `report`: tables and figures in reports/, and one MLflow run with everything.

    python stages/report.py [--params params.yaml] --lock dvc.lock --prepared data/prepared --eval data/eval
        --within reports/within.csv --cross reports/cross.csv --significance reports/significance.csv
        --metrics reports/metrics.json --finetune-csv reports/finetune.csv --finetune-md reports/finetune.md
        --mixed-csv reports/mixed.csv --mixed-md reports/mixed.md --variance reports/variance.csv
        --gallery reports/distortions.png --results reports/results.md --srcc-png reports/srcc.png
        --cross-png reports/cross_srcc.png --scatter-png reports/scatter.png --loss-png reports/pretrain_loss.png
        --plots reports/plots                                      (+ an MLflow run)

The first fourteen are read (--variance only when it is there: benchmarks/seed_spread.py measures it), the last
six written (--plots: small CSVs for `dvc plots`). The encoders' loss histories and files are read where the row
registry (iqabench.rows) has them, the stages' timing files from iqabench.timing.TIMINGS_DIR.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from iqabench import (io, manifest, paper_protocols, params, provenance, reporting, rows, stage_errors,
                      stage_paths, timing, tracking)

def link(target: Path, page: Path) -> str:
    """``target`` as a markdown link from ``page`` (the figures beside results.md: their names)."""
    return Path(os.path.relpath(target, page.parent)).as_posix()


def section(text: str) -> str:
    """A stage's markdown without its own top-level title (results.md gives each a heading)."""
    lines = text.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip() + "\n"


def encoder_files(models: list[str]) -> dict[str, Path]:
    """Rows whose encoder the pipeline trains (contrique, arniqa): logged to MLflow as models."""
    out = {}
    for name in rows.trained_here(models):
        try:
            out[name] = rows.encoder_path(name)
        except ValueError:  # trained here but not one encoder file (niqe's Gaussian model)
            continue
    return out


def read_manifests(manifests: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Each dataset's manifest table (MLflow's dataset inputs); a dataset not prepared is left out (its hash in
    the report says `missing`). A damaged one is named with the way to get it back."""
    out = {}
    for ds, path in manifests.items():
        if path.is_file():
            try:
                out[ds] = manifest.read(path)
            except manifest.ManifestError as exc:
                raise manifest.ManifestError(f"{exc}: `dvc checkout {path.parent}` or "
                                             f"`dvc repro -f prepare@{ds}`") from None
    return out


# What each stage's output must hold for the report, and how to get it back when it does not.
EVALUATE = "`dvc checkout evaluate` or `dvc repro -f evaluate`"


def input_tables(args: argparse.Namespace) -> dict[str, tuple[Path, list[str], str]]:
    """name: (path, columns, fix) of each table the report needs."""
    return {
        "within": (args.within, ["model", "dataset", "n_images", "srcc", "srcc_q25", "srcc_q75", "plcc", "krcc",
                                 "rmse"], EVALUATE),
        "cross": (args.cross, ["model", "train", "test", "srcc"], EVALUATE),
        "significance": (args.significance, ["dataset", "model_a", "model_b", "diff", "lo", "hi", "p_raw", "p_holm",
                                             "verdict", "verdict_wilcoxon"], EVALUATE),
        "predictions": (args.eval / "predictions.csv", ["dataset", "model", "split", "image", "score", "prediction"],
                        EVALUATE),
        "finetune": (args.finetune_csv, [], "`dvc checkout finetune` or `dvc repro -f finetune`"),
        "mixed": (args.mixed_csv, [], "`dvc checkout mixed` or `dvc repro -f mixed`"),
    }


def read_inputs(args: argparse.Namespace, models: list[str]) -> dict:
    """Every table the report reads, checked before any figure or table is written."""
    out = {name: io.read_table(path, columns, fix=fix) for name, (path, columns, fix) in input_tables(args).items()}
    # Measured by benchmarks/seed_spread.py, outside the pipeline; without it the report says spread is unknown.
    variance = args.variance
    out["variance"] = io.read_table(variance, ["metric", "std"], fix=f"`git checkout {variance}` or "
                                    "`python benchmarks/seed_spread.py`") if variance.is_file() else None
    out["histories"] = {key: io.read_table(path, ["step", "loss"], fix=f"`dvc repro -f pretrain@{key}`")
                        for key, path in rows.loss_histories(models).items()}
    out["metrics"] = metrics = io.read_json(args.metrics, fix=EVALUATE)
    if not (isinstance(metrics, dict) and all(isinstance(metrics.get(k), dict) for k in ("within", "cross"))):
        raise io.TableError(f"{args.metrics} lacks its 'within' and 'cross' sections; {EVALUATE}")
    out["sections"] = {name: section(io.read_text(path, fix=f"`dvc repro -f {name}`"))
                       for name, path in (("finetune", args.finetune_md), ("mixed", args.mixed_md))}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.params_option(parser, "logged, and diffed against git HEAD")
    for flag, metavar, what in (
            ("--lock", "FILE", "dvc.lock (its digest names the results; logged)"),
            ("--prepared", "DIR", "prepare's outputs: DIR/DATASET/manifest.csv"),
            ("--eval", "DIR", "evaluate's per-split outputs: DIR/predictions.csv"),
            ("--within", "CSV", "evaluate's within-dataset table"),
            ("--cross", "CSV", "evaluate's cross-dataset table"),
            ("--significance", "CSV", "evaluate's paired comparisons"), ("--metrics", "JSON", "evaluate's metrics"),
            ("--finetune-csv", "CSV", "finetune's table"), ("--finetune-md", "MD", "finetune's markdown"),
            ("--mixed-csv", "CSV", "mixed's table"), ("--mixed-md", "MD", "mixed's markdown"),
            ("--variance", "CSV", "the measured seed spread, when there"),
            ("--gallery", "PNG", "synthesize's distortion gallery (logged)"),
            ("--results", "MD", "written: the results"), ("--srcc-png", "PNG", "written: within-dataset SRCC"),
            ("--cross-png", "PNG", "written: cross-dataset SRCC"), ("--scatter-png", "PNG", "written: predictions"),
            ("--loss-png", "PNG", "written: pretraining losses"), ("--plots", "DIR", "written: CSVs for `dvc plots`")):
        stage_paths.option(parser, flag, metavar, what)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = params.section("report", args.params)
    params_file = args.params or params.repo_root() / "params.yaml"  # section() found it: logged and diffed
    manifests = {ds: args.prepared / ds / "manifest.csv" for ds in cfg["datasets"]}
    with stage_errors.one_line("report"):  # a damaged input: one line, before any figure or table is written
        tables = read_manifests(manifests)
        inputs = read_inputs(args, cfg["models"])
    within, cross, significance = inputs["within"], inputs["cross"], inputs["significance"]
    variance, predictions, histories = inputs["variance"], inputs["predictions"], inputs["histories"]
    full_reference = {m for m in cfg["models"] if rows.is_full_reference(m)}
    # The two answers sit at the MLflow run's artifact root (Compare shows them side by side), the rest in figures/.
    with stage_errors.one_line("report"):  # a full disk or a read-only folder (io.OutputWriteError): one line
        answers = [reporting.srcc_figure(within, args.srcc_png, variance, full_reference),
                   reporting.heatmap(cross, args.cross_png)]
        figures = [reporting.scatter(predictions, args.scatter_png), reporting.loss_curve(histories, args.loss_png)]
        reporting.plot_data(within, predictions, args.plots)
    every, ran = timing.stage_timings(args.results, started=timing.repro_started(), datasets=cfg["datasets"])
    sha, dirty = provenance.git_state()
    commit = provenance.commit_tag(sha, dirty)
    lock = provenance.lock_digest("report", args.lock)
    digests = {ds: provenance.file_hash(path) for ds, path in manifests.items()}
    diff, exp = provenance.params_diff(params.load(params_file), path=params_file), provenance.experiment_name()
    leaderboard = reporting.leaderboard_markdown(within, full_reference=full_reference)
    origin = (f"Commit `{commit}`, dvc.lock `{lock}` (the locked outputs of the stages upstream of `report`: "
              f"`iqabench.provenance.lock_digest`), manifests "
              + ", ".join(f"{ds} `{h}`" for ds, h in digests.items())
              + (f", DVC experiment `{exp}`" if exp else "")
              + (f", params changed against HEAD: `{provenance.format_diff(diff)}`" if diff else "")
              + f"; seed {cfg['seed']}. Reproduce with `dvc repro`. Scores of `synthetic-*` sets are pseudo-MOS "
              "from full-reference metrics, not human ratings.")
    evaluate_cfg = params.section("evaluate", args.params)
    unlike = paper_protocols.unlike_papers(cfg["models"], evaluate_cfg,
                                           params.section("extract", args.params)["max_short_side"], cfg["datasets"])
    caveat = ["Rows evaluated unlike their papers (settings: docs/reproduce.md, \"Params to set\"): "
              + "; ".join(unlike) + ".", ""] if unlike else []
    results = "\n".join([
        "# iqabench results", "", origin, "", *caveat,
        "## Leaderboard (within-dataset SRCC)", "", leaderboard,
        f"![within-dataset SRCC, its spread over splits and seeds]({link(args.srcc_png, args.results)})", "",
        f"## Within-dataset (median over content-disjoint splits; which ones: `{args.within.name}`, column `splits`)",
        "",
        reporting.within_markdown(within, significance, variance),
        "## Cross-dataset (train on all of A, test on all of B)", "", reporting.cross_markdown(cross, variance),
        f"![cross-dataset SRCC]({link(args.cross_png, args.results)})", "",
        "## End-to-end fine-tuning vs the frozen readout", "", inputs["sections"]["finetune"], "",
        "## Mixed-dataset training (MonotonicIQA vs pooled)", "", inputs["sections"]["mixed"], "",
        "## Pipeline wall time", "", timing.timings_markdown(every, ran)])
    with stage_errors.one_line("report"):
        io.write_text(args.results, results)

    metrics = inputs["metrics"]
    per_model = {m: {"within": metrics["within"].get(m, {}), "cross": metrics["cross"].get(m, {})}
                 for m in cfg["models"]}
    # The parent's columns: one SRCC per model and dataset, and the time of what ran; the rest is on the model runs.
    headline = tracking.headline(metrics["within"], cfg["datasets"])
    headline.update({f"time.{t['stage']}": t["seconds"] for t in ran})
    if ran:  # nothing upstream ran (a report re-run): no pipeline time to sum
        headline["pipeline_seconds"] = sum(t["seconds"] for t in ran)
    start_ms = int(1000 * min((t["finished"] - t["seconds"] for t in ran), default=time.time()))
    tags = {"git_commit": commit, "git_dirty": str(dirty).lower(), "mlflow.source.git.commit": sha,
            "dvc_lock": lock, "dvc_exp": exp, "params_diff": provenance.format_diff(diff, limit=4000) or "(none)",
            **{f"manifest.{ds}": h for ds, h in digests.items()}}
    datasets = [tracking.DatasetInput(ds, frame, digests[ds], str(manifests[ds])) for ds, frame in tables.items()]
    srcc_table = reporting.leaderboard(within).reset_index()
    description = "\n".join([
        f"**Leaderboard** (within-dataset SRCC, {len(cfg['datasets'])} datasets)", "", leaderboard,
        f"Within-dataset SRCC with its spread over splits and seeds: `{args.srcc_png.name}`; cross-dataset SRCC: "
        f"`{args.cross_png.name}`; every table: `{args.results.name}`; per-model statistics: the nested runs.",
        "", origin])
    with tempfile.TemporaryDirectory() as scratch:  # results.md as MLflow previews it: figures named, not linked
        preview = Path(scratch) / args.results.name
        preview.write_text(reporting.without_images(results))
        run = tracking.log_study(
            experiment=cfg["experiment"], run_name=provenance.run_name(sha, dirty, exp, diff, lock),
            params=params.load(params_file),
            metrics=headline, per_model=per_model, description=description, start_time_ms=start_ms,
            tables={"srcc_table.json": srcc_table, "tables/within.json": within, "tables/cross.json": cross,
                    "tables/significance.json": significance, "tables/mixed.json": inputs["mixed"],
                    "tables/finetune.json": inputs["finetune"]},
            artifacts={"": [preview, *answers, args.lock, params_file], "figures": [*figures, args.gallery]},
            tags=tags, eval_params=evaluate_cfg, datasets=datasets,
            encoders=encoder_files(cfg["models"]))
    print(results)
    if run:
        print(f"MLflow run '{run.name}': {run.url}\n  leaderboard of all runs: {run.table_url}\n"
              f"  (start the UI with `make ui`; store {tracking.tracking_uri()})")


if __name__ == "__main__":
    main()
