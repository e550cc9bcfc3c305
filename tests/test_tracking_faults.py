"""MLflow stores `report` meets that cannot take its run: one line saying what to do, the reports kept.

Found by a fault-injection audit: a deleted experiment `iqabench` gave MLflow's "Cannot set a deleted experiment"
with "check the store"; a text file as mlflow.db gave "file is not a database" with the same advice; `make ui`
(mlflow_ui.ui_link) raised sqlite3.DatabaseError on either file and linked to a deleted experiment.
"""
from __future__ import annotations

import sqlite3

import pytest

import fakestudy
from iqabench import mlflow_ui, tracking


pytestmark = pytest.mark.usefixtures("restore_tracking_uri")  # conftest.py


def test_a_deleted_experiment_says_how_to_restore_it_and_the_restored_one_logs(tmp_path, monkeypatch, capfd):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    inputs = fakestudy.inputs(tmp_path)
    first = tracking.log_study(experiment="iqabench", run_name="first", **inputs)
    client = mlflow.MlflowClient()
    client.delete_experiment(first.experiment_id)
    capfd.readouterr()
    assert tracking.log_study(experiment="iqabench", run_name="second", **inputs) is None
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"WARNING: the experiment 'iqabench' (id {first.experiment_id}) in {uri} is deleted, and MLflow will not " \
           "reuse its name, so this run is not logged. The DVC outputs in reports/ are complete; restore it with " \
           f"`MLFLOW_TRACKING_URI={uri} mlflow experiments restore -x {first.experiment_id}`, delete it for good " \
           f"with `mlflow gc --backend-store-uri {uri} --experiment-ids {first.experiment_id}`, or set " \
           "report.experiment in params.yaml to another name, then rerun `dvc repro -s -f report`" in err, err
    assert "restore it with" in mlflow_ui.ui_link(uri=uri)  # not a link to a page that lists nothing
    client.restore_experiment(first.experiment_id)  # what the command does
    assert tracking.log_study(experiment="iqabench", run_name="second", **inputs).experiment_id == first.experiment_id


@pytest.mark.parametrize("content", [b"hello, not a database\n", b"<html>404</html>"])
def test_a_text_file_as_mlflow_db_is_named_and_left_alone(tmp_path, monkeypatch, capfd, content):
    store = tmp_path / "mlflow.db"
    store.write_bytes(content)
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.log_study(experiment="iqabench", run_name="r", **fakestudy.inputs(tmp_path)) is None
    err = capfd.readouterr().err
    assert err.startswith(f"WARNING: {store} is not an SQLite database (it starts {content[:12]!r}), not an MLflow "
                          f"store, so this run is not logged. The DVC outputs in reports/ are complete; move it aside "
                          f"(`mv {store} {store}.bak`) to start a new store there"), err
    assert store.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == [
        "mlflow.db"]
    assert mlflow_ui.ui_link(uri=uri).startswith(f"{store} is not an SQLite database")


def test_ui_link_on_an_empty_sqlite_file_says_to_log_a_run_and_on_another_programs_to_move_it(tmp_path):
    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.write_bytes(b"")
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    assert mlflow_ui.ui_link(uri=f"sqlite:///{empty}") == (
        f"{empty} is not an MLflow store yet (no such table: experiments): run `dvc repro -s -f report` to log a "
        f"run, then open {mlflow_ui.UI_URL}")
    assert empty.read_bytes() == b""
    # Logging there would have filled another program's database with MLflow's ~66 tables.
    assert mlflow_ui.ui_link(uri=f"sqlite:///{other}") == (
        f"{other} is another program's SQLite database (1 table(s), none of them MLflow's experiments), not an "
        f"MLflow store: move it aside (`mv {other} {other}.bak`), then run `dvc repro -s -f report` to log again")


def test_another_programs_sqlite_database_is_not_logged_into(tmp_path, monkeypatch, capfd):
    store = tmp_path / "notes.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE notes (x)")
    before = store.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert tracking.log_study(experiment="iqabench", run_name="r", **fakestudy.inputs(tmp_path)) is None
    err = capfd.readouterr().err
    assert err.startswith(f"WARNING: {store} is another program's SQLite database (1 table(s), none of them "
                          "MLflow's experiments), not an MLflow store, so this run is not logged."), err
    assert store.read_bytes() == before


def _experiments(store) -> dict[str, str]:
    """The experiments in the sqlite file ``store`` and their artifact locations, read without MLflow (whose
    client would create the store)."""
    if not store.is_file():
        return {}
    with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT name, artifact_location FROM experiments"))


def _one_warning(capfd) -> str:
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_blank_tracking_uri_is_the_local_default(tmp_path, monkeypatch):
    """`export MLFLOW_TRACKING_URI=` reached MLflow as "", a file store in the cwd, which MLflow 3 refuses with a
    page on migrating file stores; a blank IQABENCH_ARTIFACT_URI became the artifact folder "   /iqabench"."""
    from iqabench import compare

    for blank in ("", " \t"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", blank)
        assert tracking.tracking_uri() == tracking.DEFAULT_URI == "sqlite:///mlflow.db"
    # Logged once: MLflow keeps a database engine per URI string for the process, so a second relative
    # sqlite:///mlflow.db would still open the first test's file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", "   ")
    run = tracking.log_study(experiment="iqabench", run_name="r", **fakestudy.inputs(tmp_path))
    assert run is not None
    assert _experiments(tmp_path / "mlflow.db")["iqabench"] == "mlflow-artifacts:/iqabench"
    assert (tmp_path / "mlartifacts" / "iqabench" / run.run_id / "artifacts" / "srcc_table.json").is_file()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # log_study's mlflow.set_tracking_uri exported the default
    assert compare.load().runs["run_id"].tolist() == [run.run_id]


@pytest.mark.parametrize("uri", ["sqlite:///:memory:", "sqlite://", "sqlite:///file::memory:?cache=shared"])
def test_an_in_memory_store_is_refused_before_anything_is_logged(tmp_path, monkeypatch, capfd, uri):
    """`sqlite:///:memory:` logged a whole run, printed its link, and lost it when the stage exited."""
    from iqabench import compare

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    inputs = fakestudy.inputs(tmp_path)
    capfd.readouterr()
    assert tracking.log_study(experiment="iqabench", run_name="r", **inputs) is None
    err = _one_warning(capfd)
    assert err.startswith(f"WARNING: MLFLOW_TRACKING_URI={uri!r} is an in-memory SQLite database: every run logged "
                          "there would vanish when this process exits, so this run is not logged. The DVC outputs in "
                          "reports/ are complete; set MLFLOW_TRACKING_URI to a file, e.g. sqlite:///mlflow.db (or "
                          "unset it for that default), or to a tracking server URL such as http://HOST:5000"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]  # no mlartifacts/ either
    with pytest.raises(compare.CompareError, match="is an in-memory SQLite database, which holds no logged runs"):
        compare.load(tracking_uri=uri)


def _under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    return str(tmp_path / "notes.txt" / "artifacts")


@pytest.mark.parametrize("bad, says", [
    (lambda _: "foo://bucket/runs", "has the scheme 'foo', which MLflow cannot keep artifacts in (it knows abfss:"),
    (lambda _: "runs/artifacts", "is not an absolute path: MLflow would fix it as {cwd}/runs/artifacts (under "
                                 "today's working folder) in the experiment for good"),
    (_under_a_file, "the folder {cwd}/notes.txt/artifacts cannot be created (Not a directory: "),
])
def test_a_bad_artifact_uri_is_refused_before_the_experiment_is_made(tmp_path, monkeypatch, capfd, bad, says):
    """MLflow fixes an experiment's artifact location when it creates it: a bad IQABENCH_ARTIFACT_URI made
    `iqabench` with that location for good (a relative one resolved under the cwd of that day), and every
    later run failed, or logged there, even after the variable was fixed."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    value = bad(tmp_path)
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", value)
    inputs = fakestudy.inputs(tmp_path)
    capfd.readouterr()
    assert tracking.log_study(experiment="iqabench", run_name="r", **inputs) is None
    err = _one_warning(capfd)
    assert err.startswith(f"WARNING: IQABENCH_ARTIFACT_URI={value!r}"), err
    assert says.format(cwd=tmp_path) in err and "so this run is not logged" in err, err
    assert "set IQABENCH_ARTIFACT_URI to " in err and "or unset it for the default" in err, err
    assert "iqabench" not in _experiments(store)  # nothing bound to the bad location
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", str(tmp_path / "artifacts"))  # fixed: the experiment takes it
    run = tracking.log_study(experiment="iqabench", run_name="r", **inputs)
    assert _experiments(store)["iqabench"] == f"{tmp_path}/artifacts/iqabench"
    assert mlflow.MlflowClient().get_run(run.run_id).info.artifact_uri.startswith(f"{tmp_path}/artifacts/iqabench/")


def test_an_artifact_uri_the_existing_experiment_does_not_use_is_named_not_ignored(tmp_path, monkeypatch, capfd):
    """With `iqabench` made at one location, a new IQABENCH_ARTIFACT_URI was ignored without a word: the run's
    files went to the experiment's old location."""
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", f"{tmp_path}/old")
    inputs = fakestudy.inputs(tmp_path)
    first = tracking.log_study(experiment="iqabench", run_name="r", **inputs)
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", f"{tmp_path}/new")
    capfd.readouterr()
    assert tracking.log_study(experiment="iqabench", run_name="r", **inputs) is None
    err = _one_warning(capfd)
    assert err.startswith(
        f"WARNING: the experiment 'iqabench' (id {first.experiment_id}) keeps its artifacts in "
        f"{tmp_path}/old/iqabench, not in {tmp_path}/new/iqabench as IQABENCH_ARTIFACT_URI='{tmp_path}/new' asks (MLflow fixes an experiment's "
        "artifact location when it creates it), so this run is not logged. The DVC outputs in reports/ are complete; "
        f"set report.experiment in params.yaml to a new name (a new experiment takes {tmp_path}/new/iqabench), or "
        f"unset IQABENCH_ARTIFACT_URI to keep logging to {tmp_path}/old/iqabench, then rerun"), err
    assert not list((tmp_path / "new").rglob("*"))  # nothing logged there, nor at the old place
    assert [p.name for p in (tmp_path / "old" / "iqabench").iterdir()] == [first.run_id]
    # What already worked stays: the same folder however written, and no variable (the experiment's own place).
    for same in (f"file://{tmp_path}/old/", None):
        if same is None:
            monkeypatch.delenv("IQABENCH_ARTIFACT_URI")
        else:
            monkeypatch.setenv("IQABENCH_ARTIFACT_URI", same)
        run = tracking.log_study(experiment="iqabench", run_name="r", **inputs)
        assert (tmp_path / "old" / "iqabench" / run.run_id / "artifacts" / "srcc_table.json").is_file()
    monkeypatch.setenv("IQABENCH_ARTIFACT_URI", f"{tmp_path}/new")  # the other way out: a new experiment
    assert tracking.log_study(experiment="iqabench-new", run_name="r", **inputs) is not None
    assert _experiments(store)["iqabench-new"] == f"{tmp_path}/new/iqabench-new"


def test_the_parent_s_columns_read_as_the_leaderboard():
    from iqabench import tracking

    within = {"random": {"b": {"srcc": 0.1}, "a": {"srcc": 0.2}}, "fr:gmsd": {"a": {"srcc": 0.8}, "b": {"srcc": 0.7}},
              "contrique": {"a": {"srcc": 0.5}, "b": {"srcc": 0.9}, "extra": {"plcc": 0.3}}}
    # Every dataset's winner first: the few columns on screen already say who wins where.
    assert list(tracking.headline(within, ["a", "b"])) == [
        "srcc/a/fr:gmsd", "srcc/b/contrique", "srcc/a/contrique", "srcc/b/fr:gmsd", "srcc/a/random", "srcc/b/random"]
