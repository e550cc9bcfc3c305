"""`iqabench compare`: chosen MLflow runs side by side, the terminal twin of the UI's "Compare".

Each `dvc repro` logs one parent run (see tracking.py) whose metrics are named
``within.<model>.<dataset>.<statistic>`` and ``cross.<model>.<A>_to_<B>.<statistic>``;
this picks runs by commit, then columns by section, model, dataset and statistic.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import pandas as pd
import typer

from . import tracking

RUN_COLUMNS = ["run_name", "start_time", "commit", "run_id"]


class CompareError(ValueError):
    """A question the tracking store cannot answer: an unknown experiment or a bad filter."""


def _metric_parts(column: str) -> Optional[tuple[str, str, str, str]]:
    """(section, model, dataset, statistic) of a parent run's metric column, or None for other metrics."""
    parts = column.split(".")
    if len(parts) < 4 or parts[0] not in ("within", "cross"):
        return None
    return parts[0], parts[1], ".".join(parts[2:-1]), parts[-1]


def _dataset_matches(dataset: str, wanted: Sequence[str]) -> bool:
    # A cross column "A_to_B" concerns both A and B.
    names = {dataset, *dataset.split("_to_")} if "_to_" in dataset else {dataset}
    return any(tracking.metric_name(name) in names for name in wanted)


def _quote(value: str) -> str:
    if "'" in value:
        raise CompareError(f"a filter value may not contain a single quote: {value!r}")
    return f"'{value}'"


def compare_runs(experiment: str = "iqabench", *, commit: Optional[str] = None, models: Sequence[str] = (),
                 datasets: Sequence[str] = (), statistics: Sequence[str] = ("srcc",),
                 sections: Sequence[str] = ("within",), run_name: Optional[str] = None,
                 max_runs: int = 20, tracking_uri: Optional[str] = None) -> pd.DataFrame:
    """One row per parent run, newest first: run_name, start_time, commit, run_id, then the chosen metrics.

    ``commit`` matches a prefix of the git_commit tag; empty ``models``/``datasets`` mean all.
    Metric columns are named without MLflow's ``metrics.`` prefix; columns no chosen run has are dropped.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri or tracking.tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        known = sorted(e.name for e in mlflow.search_experiments())
        raise CompareError(f"no experiment '{experiment}' in {mlflow.get_tracking_uri()} (it has {known}); "
                           "run `dvc repro` to log one, or point MLFLOW_TRACKING_URI at the right store")
    filters = []
    if commit:
        filters.append(f"tags.git_commit LIKE {_quote(commit + '%')}")
    if run_name:
        filters.append(f"attributes.run_name = {_quote(run_name)}")
    # Nested per-model runs repeat the parent's numbers under other names; ask for more rows than
    # wanted so that max_runs parents survive dropping them.
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=" and ".join(filters),
                              max_results=max(1, max_runs) * 20, order_by=["attributes.start_time DESC"],
                              output_format="pandas")
    if runs.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    if "tags.mlflow.parentRunId" in runs.columns:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    runs = runs.head(max_runs)
    chosen = []
    for column in runs.columns:
        parts = _metric_parts(column[len("metrics."):]) if column.startswith("metrics.") else None
        if parts is None:
            continue
        section, model, dataset, statistic = parts
        if (section in sections and statistic in statistics and (not models or model in models)
                and (not datasets or _dataset_matches(dataset, datasets)) and runs[column].notna().any()):
            chosen.append(column)
    out = pd.DataFrame({
        "run_name": runs.get("tags.mlflow.runName"),
        "start_time": runs["start_time"],  # UTC
        "commit": runs.get("tags.git_commit"),
        "run_id": runs["run_id"],
    })
    def order(column: str):  # grouped by model and dataset, statistics in the order asked for
        section, model, dataset, statistic = _metric_parts(column[len("metrics."):])
        return section, model, dataset, list(statistics).index(statistic)

    for column in sorted(chosen, key=order):
        out[column[len("metrics."):]] = runs[column]
    return out.reset_index(drop=True)


def render(frame: pd.DataFrame, title: str):
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, justify="right" if column not in RUN_COLUMNS else "left",
                         overflow="fold")
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            if column == "start_time" and pd.notna(value):
                cells.append(pd.Timestamp(value).strftime("%Y-%m-%d %H:%M"))
            elif column == "commit" and isinstance(value, str):
                cells.append(value[:12] + ("-dirty" if value.endswith("-dirty") else ""))
            elif column == "run_id":
                cells.append(str(value)[:8])
            elif isinstance(value, float):
                cells.append("—" if pd.isna(value) else f"{value:.4f}")
            else:
                cells.append("—" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value))
        table.add_row(*cells)
    return table


def compare_command(
    experiment: str = typer.Option("iqabench", "--experiment", "-e", help="MLflow experiment name"),
    commit: Optional[str] = typer.Option(None, "--commit", "-c", help="git commit (prefix) the runs were made at"),
    model: List[str] = typer.Option([], "--model", "-m", help="model(s) to show; repeat the option; default all"),
    dataset: List[str] = typer.Option([], "--dataset", "-d", help="dataset(s) to show; repeat; default all"),
    metric: List[str] = typer.Option(["srcc"], "--metric", help="statistic(s): srcc, plcc, krcc, rmse"),
    cross: bool = typer.Option(False, "--cross/--within", help="cross-dataset instead of within-dataset metrics"),
    limit: int = typer.Option(10, "--limit", "-n", help="newest runs to show"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri",
                                               help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"),
) -> None:
    """Compare logged pipeline runs (one row per `dvc repro`) on chosen metrics."""
    from rich.console import Console

    console = Console()
    try:
        frame = compare_runs(experiment, commit=commit, models=model, datasets=dataset, statistics=metric,
                             sections=("cross",) if cross else ("within",), max_runs=limit,
                             tracking_uri=tracking_uri)
    except CompareError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    if frame.empty:
        console.print(f"no runs in experiment '{experiment}'" + (f" at commit {commit}" if commit else "")
                      + "; run `dvc repro` to log one")
        raise typer.Exit(1)
    console.print(render(frame, f"experiment '{experiment}' ({tracking_uri or tracking.tracking_uri()})"))
