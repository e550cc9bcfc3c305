"""The MLflow UI side of the study: the run table's saved view ``leaderboard`` and the links that open it.

MLflow 3.17's UI opens an experiment on its GenAI overview; the links here go straight to the run table
("Model training" side) in the saved view, whose columns are the parent runs' ``srcc/<dataset>/<model>``
metrics (:func:`iqabench.tracking.headline_key`). :func:`iqabench.tracking.log_study` saves the view after
each run; `make ui` prints :func:`ui_link`.
"""
from __future__ import annotations

import base64
import json
import time
import zlib
from pathlib import Path
from typing import Sequence

from .tracking_store import DEFAULT_URI, is_server, sqlite_file, tracking_uri

UI_URL = "http://127.0.0.1:5000"  # what `make ui` serves
# What the leaderboard and `iqabench compare` read: one row per `dvc repro`, and only a run that logged all of
# it (a report that failed midway leaves a FAILED parent with some of the columns).
FINISHED = "attributes.status = 'FINISHED'"
PARENTS_ONLY = f"tags.mlflow.parentRunId IS NULL and {FINISHED}"  # the leaderboard view's filter
# What logs the study when `dvc repro` ran nothing: a fresh clone's committed outputs skip the report stage.
LOG_HINT = "run `make repro` (after a `dvc repro` that ran nothing, `dvc repro -s -f report` logs it)"
VIEW_KEY = "leaderboard"  # the saved view of the run table: one SRCC column per model and dataset
ML_WORKFLOW = "workflowType=machine_learning"  # MLflow 3's "Model training" side of the UI
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the run table's column id
RUN_NAME_MAX_PX = 460  # ~57 characters: a longer name is cut in the table (whole on its run page)


def run_name_width(names: Sequence[str]) -> int:
    """Pixels that show the longest run name whole in the run table (MLflow's default, 190, cuts
    ``ef312f00+dirty HEAD params``): ~7 per character plus the expander and colour dot, capped so
    the leaderboard columns stay on screen."""
    return min(RUN_NAME_MAX_PX, max(190, 60 + 7 * max((len(n) for n in names), default=0)))


def save_view(experiment_id: str, columns: Sequence[str], client, run_names: Sequence[str] = ()) -> None:
    """The run table's saved view ``leaderboard``: run name, start, duration, then the given metric columns.

    The UI keeps saved views as experiment tags ``mlflow.sharedViewState.<key>`` holding a
    deflated JSON of its view state (format read from what MLflow 3.17's "Save view" writes; widths
    apply to the columns listed in ``columnOrder``, by the grid's column ids). The run name column
    is as wide as the longest of ``run_names`` needs (the parents' names are what tells runs apart).
    """
    ids = [f"metrics.`{c}`" for c in columns]
    # Parents only: the UI pages 100 runs, and each parent's ~24 nested runs would leave 4 parents on a page.
    state = {"searchFilter": PARENTS_ONLY, "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
             "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
             "selectedColumns": ids,
             "columnOrder": ["0", RUN_NAME_COLUMN, "runDateAndNestInfo", "duration", *ids],
             "columnWidths": {RUN_NAME_COLUMN: run_name_width(run_names),
                              **{i: 32 + 7 * len(c) for i, c in zip(ids, columns)}},
             "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
             "runListHidden": False, "isAccordionReordered": False, "useGroupedValuesInCharts": True,
             "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
             "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""}}
    packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode())).decode()
    now = int(time.time() * 1000)
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(
        {"name": "leaderboard (SRCC per model and dataset)", "createdAt": now, "updatedAt": now,
         "state": f"deflate;{packed}"}))


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_tables(database: Path) -> set[str]:
    """The tables of an SQLite file, read in read-only mode: nothing is written, not even a journal (MLflow's
    client creates its ~66 tables in any file it opens). Raises sqlite3.Error (not a database, locked)."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def not_sqlite(uri: str) -> str | None:
    """Why the local store file of ``uri`` is no MLflow store: no SQLite database (a text file, a download's
    error page), or another program's database (tables, none of them MLflow's ``experiments``), which MLflow
    would fill with its own tables. None for a store, an empty file (one SQLite fills) or a busy database.
    MLflow's answer was "file is not a database" and "check the store"."""
    import sqlite3

    database = sqlite_file(uri)
    if database is None or not database.is_file():
        return None
    with open(database, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if not head:
        return None
    if head != SQLITE_MAGIC:
        return f"{database} is not an SQLite database (it starts {head[:12]!r}), not an MLflow store"
    try:
        tables = sqlite_tables(database)
    except sqlite3.Error:  # locked by a run being logged: MLflow waits for it, and says so if it cannot
        return None
    if tables and "experiments" not in tables:
        return (f"{database} is another program's SQLite database ({len(tables)} table(s), none of them MLflow's "
                "experiments), not an MLflow store")
    return None


def restore_command(uri: str, experiment_id: str) -> str:
    """The command that brings a deleted experiment back from MLflow's trash."""
    return f"`MLFLOW_TRACKING_URI={uri} mlflow experiments restore -x {experiment_id}`"


def ui_base() -> str:
    uri = tracking_uri()
    return uri.rstrip("/") if is_server(uri) else UI_URL


def view_url(experiment_id: str, base: str | None = None) -> str:
    """The run table with the leaderboard columns, on MLflow 3's "Model training" side."""
    return f"{base or ui_base()}/#/experiments/{experiment_id}/runs?{ML_WORKFLOW}&viewStateShareKey={VIEW_KEY}"


def ui_link(experiment: str = "iqabench", uri: str = DEFAULT_URI) -> str:
    """What `make ui` prints: the leaderboard view of ``experiment`` in the local store ``uri``.

    A link straight to the run table: MLflow 3.17's UI opens an experiment on its GenAI overview
    unless told otherwise. Read with sqlite3, read-only: MLflow's client would create a missing
    store, and take seconds to import.
    """
    import sqlite3

    path = sqlite_file(uri)
    if path is None or not path.is_file():
        return f"no store at {path} yet: {LOG_HINT}, then open {UI_URL}"
    foreign = not_sqlite(uri)
    if foreign:  # sqlite3's DatabaseError was a traceback in `make ui`
        return f"{foreign}: move it aside (`mv {path} {path}.bak`), then run `dvc repro -s -f report` to log again"
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            found = db.execute("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?",
                               (experiment,)).fetchone()
    except sqlite3.DatabaseError as err:  # an empty file, another program's database
        return f"{path} is not an MLflow store yet ({err}): run `dvc repro -s -f report` to log a run, then " \
               f"open {UI_URL}"
    if found is None:
        return f"no experiment '{experiment}' in {path} yet: {LOG_HINT}, then open {UI_URL}"
    if found[1] == "deleted":  # the UI lists no deleted experiment: the link would open an empty page
        return (f"the experiment '{experiment}' (id {found[0]}) in {path} is deleted: restore it with "
                f"{restore_command(uri, found[0])}")
    return f"Open {view_url(str(found[0]), base=UI_URL)}"


def logged(lock: str, experiment: str = "iqabench", uri: str | None = None) -> bool:
    """Whether a finished parent run of ``experiment`` in the local store ``uri`` holds the results of the
    ``dvc_lock`` digest ``lock`` (read-only, with sqlite3). False for any other store: the report stage's own
    check (tracking.already_logged) then keeps a second run of it from being logged."""
    import sqlite3

    uri = uri or tracking_uri()
    path = sqlite_file(uri)
    if path is None or not path.is_file() or not_sqlite(uri):
        return False
    query = ("SELECT 1 FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
             "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'dvc_lock' AND t.value = ? "
             "WHERE e.name = ? AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active' AND NOT EXISTS "
             "(SELECT 1 FROM tags p WHERE p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId') LIMIT 1")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            return db.execute(query, (lock, experiment)).fetchone() is not None
    except sqlite3.DatabaseError:  # not an MLflow store (yet): nothing is logged there
        return False


def _current_state_logged() -> bool:
    """`make repro`'s question: is what `dvc repro` left in dvc.lock already in MLflow?"""
    from . import params, provenance

    return logged(provenance.lock_digest(), params.section("report")["experiment"])


def run_url(experiment_id: str, run_id: str, base: str | None = None) -> str:
    return f"{base or ui_base()}/#/experiments/{experiment_id}/runs/{run_id}?{ML_WORKFLOW}"


if __name__ == "__main__":  # `python -m iqabench.mlflow_ui logged`: exit 0 when the current results are logged
    import sys

    if sys.argv[1:] != ["logged"]:
        sys.exit("usage: python -m iqabench.mlflow_ui logged")
    sys.exit(0 if _current_state_logged() else 1)
