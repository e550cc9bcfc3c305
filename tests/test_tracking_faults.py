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


def test_ui_link_on_an_empty_or_foreign_sqlite_file_says_to_log_a_run(tmp_path):
    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.write_bytes(b"")
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    for store in (empty, other):
        assert mlflow_ui.ui_link(uri=f"sqlite:///{store}") == (
            f"{store} is not an MLflow store yet (no such table: experiments): run `dvc repro -s -f report` to log a "
            f"run, then open {mlflow_ui.UI_URL}")
    assert empty.read_bytes() == b""
