"""`iqabench compare`: logged pipeline runs side by side, the terminal twin of the UI's "Compare".

Each `dvc repro` logs one parent run (see tracking.py) with one nested run per
model (tag ``model``) holding ``within.<dataset>.<statistic>`` and
``cross.<A>_to_<B>.<statistic>``. This reads those, and, for runs logged before
the nested runs held every statistic, the parent's
``within.<model>.<dataset>.<statistic>`` keys. The table has models as rows and
runs as columns (oldest to newest), one table per dataset (or cross pair), the
change from the oldest to the newest run, and the params that differ between
the runs; it is sized to the terminal (80 columns included).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import pandas as pd
import typer

from . import compare_store, mlflow_ui, tracking, tracking_store

VALUE_COLUMNS = ["run_id", "section", "model", "dataset", "statistic", "value"]


class CompareError(ValueError):
    """A question the tracking store cannot answer: an unknown experiment, model, dataset or statistic."""


@dataclass
class Comparison:
    runs: pd.DataFrame    # one row per parent run, oldest first: run_id, run_name, start_time, commit, params
    values: pd.DataFrame  # long form: VALUE_COLUMNS
    skipped: dict[str, int] = field(default_factory=dict)  # when no run finished: parent runs per other status


def _key(name: str) -> str:
    """Model and dataset names as compared: ``fr:gmsd`` and runs' older ``fr_gmsd`` are one name, and so are
    ``café`` typed decomposed (NFD, as some keyboards and macOS file names give it) and as logged (NFC)."""
    return tracking.metric_name(unicodedata.normalize("NFC", name)).replace(":", "_")


def _quote(value: str) -> str:
    if "'" in value:
        raise CompareError(f"a filter value may not contain a single quote: {value!r}")
    return f"'{value}'"


# What `--commit` may be: hex digits of a commit (SHA-1 or SHA-256), as provenance.git_commit tags runs, which
# may end in "-dirty". Nothing else: the value becomes an MLflow LIKE pattern, which has no escape for its
# wildcards, so `-c %` or `-c _` matched every run.
COMMIT_PREFIX = re.compile(r"[0-9a-f]{1,64}(-dirty)?")


def commit_prefix(commit: str) -> str:
    """``commit`` as a prefix to match the runs' ``git_commit`` tags (lower case), else a CompareError."""
    prefix = commit.strip().lower()
    if not prefix:  # `-c "$SHA"` with $SHA unset showed the runs of every commit
        raise CompareError(f"--commit {commit!r} is empty (an unset shell variable?): give a commit hash, or leave "
                           "--commit out for the runs of every commit")
    if not COMMIT_PREFIX.fullmatch(prefix):
        raise CompareError(f"--commit {commit!r} is not a git commit: give its hash or the first characters of it "
                           "(hex digits, e.g. 3f2a9c1; `git log --oneline` lists them)")
    return prefix


def _child_values(run) -> list[dict]:
    model = run.data.tags.get("model")
    out = []
    for key, value in run.data.metrics.items():
        section, _, rest = key.partition(".")
        dataset, _, statistic = rest.rpartition(".")
        if section in ("within", "cross") and dataset:
            out.append({"section": section, "model": model, "dataset": dataset, "statistic": statistic,
                        "value": value})
    return out


def _parent_values(run, models: set[str]) -> list[dict]:
    """Older runs kept every statistic on the parent as ``<section>.<model>.<dataset>.<statistic>``."""
    out = []
    for key, value in run.data.metrics.items():
        section, _, rest = key.partition(".")
        if section not in ("within", "cross"):
            continue
        body, _, statistic = rest.rpartition(".")
        model = next((m for m in sorted(models, key=len, reverse=True) if body.startswith(m + ".")), None)
        if model is None:
            model, _, dataset = body.partition(".")
        else:
            dataset = body[len(model) + 1:]
        out.append({"section": section, "model": model, "dataset": dataset, "statistic": statistic, "value": value})
    return out


def load(experiment: str = "iqabench", *, commit: Optional[str] = None, run_name: Optional[str] = None,
         max_runs: int = 4, tracking_uri: Optional[str] = None) -> Comparison:
    """The newest ``max_runs`` finished parent runs (oldest first) and every value they hold."""
    if max_runs < 1:
        raise CompareError(f"the number of runs to show must be at least 1, got {max_runs}")
    if commit is not None:
        commit_prefix(commit)  # before the store is opened; "" too, which would match every commit
    if tracking_uri is not None and not tracking_uri.strip():  # not silently the default store
        raise CompareError(f"--tracking-uri {tracking_uri!r} is empty (an unset shell variable?): give the store "
                           f"({compare_store.READ_FORMS}), or leave the option out for the repository's mlflow.db")
    uri, source = compare_store.read_uri(tracking_uri)
    problem = compare_store.read_problem(uri, source)  # before MLflow, which would create tables to read
    if problem:
        raise CompareError(problem)
    database = tracking_store.sqlite_file(uri)
    tracking_store.fail_fast()
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:  # the client too: an unknown scheme fails when it is made, a file that is not a database when read
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment_obj = client.get_experiment_by_name(experiment)
        known = [] if experiment_obj else sorted(e.name for e in client.search_experiments())
        if experiment_obj is None:
            raise CompareError(f"no experiment '{experiment}' in {compare_store.shown(uri)} (it has {known}); "
                               f"{mlflow_ui.LOG_HINT} to log one, or point --tracking-uri (or MLFLOW_TRACKING_URI) "
                               "at the right store")
        runs, values, skipped = _read(client, experiment_obj.experiment_id, commit, run_name, max_runs)
    except (MlflowException, SQLAlchemyError) as exc:  # one line, not a traceback or minutes of retries
        reason = compare_store.short_reason(str(exc)) or type(exc).__name__
        raise CompareError(compare_store.cannot_read(uri, f"{type(exc).__name__}: {reason}", database)) from None
    return Comparison(pd.DataFrame(runs, columns=["run_id", "run_name", "start_time", "commit", "params"]),
                      pd.DataFrame(values, columns=VALUE_COLUMNS), skipped)


def _read(client, eid: str, commit: Optional[str], run_name: Optional[str], max_runs: int) -> tuple:
    """The finished parent runs (oldest first), their values as rows for :class:`Comparison`, and, when none
    finished, how many parent runs were left out per status (FAILED: a report stage that failed midway)."""
    filters = [mlflow_ui.FINISHED]  # as the leaderboard view: not a half-logged run that failed
    if commit is not None:
        filters.append(f"tags.git_commit LIKE {_quote(commit_prefix(commit) + '%')}")  # hex: no wildcard in it
    if run_name:
        filters.append(f"attributes.run_name = {_quote(run_name)}")
    # Nested runs (one per model and per model x training set) share the filter: ask for enough rows that
    # max_runs parents survive dropping them.
    candidates = client.search_runs([eid], filter_string=" and ".join(filters),
                                    max_results=min(50_000, max_runs * 500),
                                    order_by=["attributes.start_time DESC"])
    parents = [r for r in candidates if "mlflow.parentRunId" not in r.data.tags][:max_runs][::-1]
    skipped: dict[str, int] = {}
    if not parents:  # "no runs" would hide the failed ones: say they were skipped
        for run in client.search_runs([eid], filter_string=" and ".join(filters[1:]), max_results=50_000):
            if "mlflow.parentRunId" not in run.data.tags:
                skipped[run.info.status] = skipped.get(run.info.status, 0) + 1
    runs, values = [], []
    for parent in parents:
        runs.append({"run_id": parent.info.run_id, "run_name": parent.info.run_name,
                     "start_time": pd.Timestamp(parent.info.start_time, unit="ms"),
                     "commit": parent.data.tags.get("git_commit", ""), "params": dict(parent.data.params)})
        children = client.search_runs([eid], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                      max_results=5000)
        found = [v for child in children if "model" in child.data.tags for v in _child_values(child)]
        if not found:
            found = _parent_values(parent, {c.data.tags["model"] for c in children if "model" in c.data.tags})
        values += [{"run_id": parent.info.run_id, **v} for v in found]
    return runs, values, skipped


def select(values: pd.DataFrame, *, models: Sequence[str] = (), datasets: Sequence[str] = (),
           statistics: Sequence[str] = ("srcc",), section: str = "within") -> pd.DataFrame:
    """The chosen values; an unknown model, dataset or statistic raises CompareError with the known ones."""
    part = values[values["section"] == section]
    if part.empty:  # not "unknown statistic 'srcc'; the runs shown have: none"
        raise CompareError(f"the runs shown hold no {section}-dataset results (metrics such as "
                           f"{section}.MODEL.DATASET.srcc): they were not logged by iqabench's report stage; point "
                           "--experiment or --tracking-uri at the runs `dvc repro` logged")

    def check(wanted: Sequence[str], known: Sequence[str], what: str) -> set[str]:
        known_keys = {_key(k): k for k in known}
        missing = [w for w in wanted if _key(w) not in known_keys]
        if missing:
            raise CompareError(f"unknown {what} {', '.join(map(repr, missing))}; the runs shown have: "
                               f"{', '.join(sorted(known)) or 'none'}")
        return {_key(w) for w in wanted}

    names = set()
    for pair in part["dataset"].unique():
        names.update(pair.split("_to_") if section == "cross" else [pair])
    wanted_models = check(models, list(part["model"].unique()), "model")
    wanted_data = check(datasets, sorted(names), "dataset")
    wanted_stats = check(statistics, list(part["statistic"].unique()), "statistic")
    keep = part["statistic"].map(_key).isin(wanted_stats)
    if wanted_models:
        keep &= part["model"].map(_key).isin(wanted_models)
    if wanted_data:
        keep &= part["dataset"].map(lambda d: bool({_key(n) for n in d.split("_to_")} & wanted_data)
                                    if section == "cross" else _key(d) in wanted_data)
    return part[keep]


def params_diff(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Params whose value differs between the runs: ``{key: [value in run 1, run 2, ...]}``; "—" where a run
    has no such param (logged before it existed), ``''`` for an empty one (a blank read as missing)."""
    keys = sorted({k for p in runs["params"] for k in p})
    out = {}
    for key in keys:
        seen = [p.get(key, "—") or "''" for p in runs["params"]]
        if len(set(seen)) > 1:
            out[key] = seen
    return out


def cell(value) -> str:
    """A value in at most 10 characters: 4 decimals for a correlation, 3 significant digits beyond 1000 (an
    RMSE of 1e308 was a 309-digit number that squeezed the model column), "—" where there is none."""
    if value is None or pd.isna(value):
        return "—"
    value = float(value)
    return f"{value:.4f}" if abs(value) < 1000 or math.isinf(value) else f"{value:.3g}"


def delta(first, last) -> str:
    """The change from the first to the last run, in Python floats: numpy warned of an overflow on 1e308 - -1e308."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return "—"
    change = float(last) - float(first)
    text = cell(change)
    return text if text.startswith("-") else "+" + text


def render(comparison: Comparison, chosen: pd.DataFrame, width: int) -> list:
    """Rich renderables: a legend of the runs, the params that differ, one table per dataset and statistic."""
    from rich.table import Table
    from rich.text import Text

    runs = comparison.runs
    labels = {rid: f"#{i + 1}" for i, rid in enumerate(runs["run_id"])}
    out = []
    for rid, row in runs.set_index("run_id").iterrows():
        stamp = row["start_time"].strftime("%Y-%m-%d %H:%M")
        # Fixed-width fields first: a long run name then wraps on its own, not mid-way through the run id.
        out.append(Text(f"{labels[rid]}  {stamp} UTC  run {rid[:8]}  {row['run_name']}"))
    diff = params_diff(runs)
    if len(runs) > 1:
        out.append(Text("params that differ: " + ("; ".join(f"{k}: {' | '.join(v)}" for k, v in diff.items())
                                                  if diff else "none")))
    newest = runs["run_id"].iloc[-1]
    for (dataset, statistic), part in chosen.groupby(["dataset", "statistic"], sort=False):
        # The title is a line of its own: as a table title it would wrap at the table's width.
        out.append(Text(dataset.replace("_to_", " -> ") + f"  ({statistic.upper()})", style="bold"))
        table = Table()
        table.add_column("model", no_wrap=True)
        for rid in runs["run_id"]:
            table.add_column(labels[rid], justify="right", no_wrap=True)
        with_delta = len(runs) > 1
        if with_delta:
            table.add_column(f"Δ {labels[runs['run_id'].iloc[-1]]}-#1", justify="right", no_wrap=True)
        # dropna=False: a model whose value is NaN in every run (a constant prediction's SRCC) is a row of "—",
        # not a model that was left out.
        grid = part.pivot_table(index="model", columns="run_id", values="value", aggfunc="first", dropna=False)
        # Who wins first: the newest run's value, best at the top (RMSE: lowest), models it lacks last.
        key = grid[newest] if newest in grid.columns else grid.iloc[:, -1]
        for model in key.sort_values(ascending=statistic == "rmse", na_position="last").index:
            cells = [grid.loc[model].get(rid) for rid in runs["run_id"]]
            text = [cell(c) for c in cells] + ([delta(cells[0], cells[-1])] if with_delta else [])
            # Text, not a str: a logged name such as "[red]x[/red]" is shown as logged, not read as rich markup.
            table.add_row(Text(str(model)), *map(Text, text))
        out.append(table)
    return out


def fitting_runs(width: int, model_width: int) -> int:
    """How many run columns (7 characters each, plus the delta column) fit beside the model column."""
    return max(1, (width - (model_width + 4) - 12) // 9)


# What an option left out means: an empty value (`-c "$SHA"` with $SHA unset) silently meant the same.
LEFT_OUT = {"experiment": "for iqabench", "commit": "for the runs of every commit",
            "tracking_uri": "for the repository's mlflow.db (or MLFLOW_TRACKING_URI)", "model": "for every model",
            "dataset": "for every dataset", "metric": "for srcc"}


def _refuse_blank(**given) -> None:
    for name, value in given.items():
        for one in [value] if value is None or isinstance(value, str) else value:
            if one is not None and not one.strip():
                option = "--" + name.replace("_", "-")
                raise CompareError(f"{option} {one!r} is empty (an unset shell variable?): give a value, or leave "
                                   f"{option} out {LEFT_OUT[name]}")


def _no_runs(comparison: Comparison, experiment: str, commit: Optional[str]) -> None:
    """Exit 1 with one line on stderr: no finished run to show (and how many failed ones were skipped)."""
    from .mlflow_ui import LOG_HINT

    where = f"experiment '{experiment}'" + (f" at commit {commit}" if commit else "")
    failed = comparison.skipped.get("FAILED", 0)
    other = sum(comparison.skipped.values()) - failed
    if failed or other:
        parts = [f"{failed} failed run(s)"] * bool(failed) + [f"{other} unfinished run(s)"] * bool(other)
        typer.echo(f"no finished runs in {where} ({' and '.join(parts)} skipped); {LOG_HINT} to log one", err=True)
    else:
        typer.echo(f"no runs in {where}; {LOG_HINT} to log one", err=True)
    raise typer.Exit(1)


def compare_command(
    experiment: str = typer.Option("iqabench", "--experiment", "-e", help="MLflow experiment name"),
    commit: Optional[str] = typer.Option(None, "--commit", "-c", help="git commit (prefix) the runs were made at"),
    model: List[str] = typer.Option([], "--model", "-m", help="model(s) to show; repeat the option; default all"),
    dataset: List[str] = typer.Option([], "--dataset", "-d", help="dataset(s) to show; repeat; default all"),
    metric: List[str] = typer.Option(["srcc"], "--metric", help="statistic(s): srcc, plcc, krcc, rmse"),
    cross: bool = typer.Option(False, "--cross/--within", help="cross-dataset instead of within-dataset metrics"),
    limit: int = typer.Option(4, "--limit", "-n", min=1, help="newest runs to show (as many as fit the terminal)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri",
                                               help="default: $MLFLOW_TRACKING_URI or the repository's mlflow.db"),
) -> None:
    """Compare logged pipeline runs: models as rows, runs as columns, the change from the oldest to the newest."""
    from .terminal import console as make_console

    console = make_console()
    try:
        _refuse_blank(experiment=experiment, commit=commit, tracking_uri=tracking_uri, model=model,
                      dataset=dataset, metric=metric)
        comparison = load(experiment, commit=commit, max_runs=limit, tracking_uri=tracking_uri)
        if comparison.runs.empty:
            _no_runs(comparison, experiment, commit)
        chosen = select(comparison.values, models=model, datasets=dataset, statistics=metric,
                        section="cross" if cross else "within")
    except CompareError as exc:
        typer.echo(f"error: {exc}", err=True)  # unwrapped: the list of known names stays whole
        raise typer.Exit(2)
    model_width = max([5, *(len(m) for m in chosen["model"])])
    fit = fitting_runs(console.width, model_width)
    if len(comparison.runs) > fit:
        dropped = len(comparison.runs) - fit
        comparison.runs = comparison.runs.iloc[dropped:].reset_index(drop=True)
        chosen = chosen[chosen["run_id"].isin(comparison.runs["run_id"])]
        console.print(f"({dropped} older run(s) left out to fit {console.width} columns; widen the terminal "
                      "or pass --limit)")
    if chosen.empty:
        typer.echo("the chosen runs hold no such values", err=True)
        raise typer.Exit(1)
    for renderable in render(comparison, chosen, console.width):
        console.print(renderable)
