"""A report whose MLflow logging fails midway: the half-logged parent run ends FAILED and is neither a row of the
leaderboard view nor a run of `iqabench compare`.

Found by a fault-injection audit: a failure between creating the parent run and starting it (the datasets'
conversion, or the store refusing start_run) left the parent RUNNING for good; a failure while logging ended it
FAILED, with some of its SRCC columns; either way the leaderboard listed it and `compare` showed it as the newest
run.
"""
from __future__ import annotations

import base64
import json
import zlib

import pytest

import fakestudy
from iqabench import compare, mlflow_ui, tracking

pytestmark = pytest.mark.usefixtures("restore_tracking_uri")  # conftest.py


def _fail_converting_datasets(monkeypatch):
    def broken(self):
        raise RuntimeError("the manifest cannot be read")

    monkeypatch.setattr(tracking.DatasetInput, "as_mlflow", broken)


def _fail_starting_the_parent(monkeypatch):
    import mlflow

    real = mlflow.start_run

    def start_run(*args, **kwargs):
        if kwargs.get("run_id"):  # the parent, which log_study creates first and then starts
            raise RuntimeError("the store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "start_run", start_run)


def _fail_logging_files(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tracking, "_log_file", broken)


def _leaderboard_filter(client, experiment_id: str) -> str:
    """The search filter of the saved view the printed link opens (as the UI reads it)."""
    saved = json.loads(client.get_experiment(experiment_id).tags[f"mlflow.sharedViewState.{mlflow_ui.VIEW_KEY}"])
    return json.loads(zlib.decompress(base64.b64decode(saved["state"].split(";", 1)[1])))["searchFilter"]


@pytest.mark.parametrize("fail", [_fail_converting_datasets, _fail_starting_the_parent, _fail_logging_files],
                         ids=["datasets", "start_run", "files"])
def test_a_run_that_fails_midway_ends_failed_and_is_not_on_the_leaderboard_or_in_compare(tmp_path, monkeypatch,
                                                                                         capfd, fail):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    good = tracking.log_study(experiment="iqabench", run_name="good", **fakestudy.inputs(tmp_path))
    with monkeypatch.context() as patched:
        fail(patched)
        capfd.readouterr()
        assert tracking.log_study(experiment="iqabench", run_name="broken",
                                  **fakestudy.inputs(tmp_path, shift=0.1, commit="fedcba9876543210")) is None
    err = capfd.readouterr().err
    assert err.startswith(f"WARNING: MLflow logging to {uri} failed (RuntimeError: ") and "Traceback" not in err, err

    client = mlflow.MlflowClient(tracking_uri=uri)
    parents = {r.info.run_name: r for r in client.search_runs([good.experiment_id])
               if "mlflow.parentRunId" not in r.data.tags}
    assert parents["good"].info.status == "FINISHED"
    # None left RUNNING: the conversion now fails before the run exists; the other two end it FAILED.
    assert {name: r.info.status for name, r in parents.items() if name != "good"} == (
        {} if fail is _fail_converting_datasets else {"broken": "FAILED"})
    if fail is _fail_logging_files:  # half-logged: the columns the leaderboard shows were written
        assert parents["broken"].data.metrics["srcc/synthetic-single/contrique"] == pytest.approx(0.71)

    listed = client.search_runs([good.experiment_id], _leaderboard_filter(client, good.experiment_id))
    assert [r.info.run_id for r in listed] == [good.run_id]
    shown = compare.load(tracking_uri=uri)
    assert shown.runs["run_id"].tolist() == [good.run_id]
    assert compare.load(commit="fedcba98", tracking_uri=uri).runs.empty


def test_a_large_file_is_recorded_as_shared_only_once_it_is_stored(tmp_path, monkeypatch):
    """The gallery's sha256 tag was set before the file was logged: a run that failed in between was named
    later as the run holding a file it never stored, and later runs skipped logging it."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    gallery = tmp_path / "distortions.png"
    gallery.write_bytes(bytes(range(256)) * (tracking.SHARED_BYTES // 256))
    inputs = fakestudy.inputs(tmp_path)
    inputs["artifacts"] = {"figures": [gallery]}
    with monkeypatch.context() as patched:
        def log_artifact(*args, **kwargs):
            raise RuntimeError("disk full")

        patched.setattr(mlflow, "log_artifact", log_artifact)
        assert tracking.log_study(experiment="iqabench", run_name="r", **inputs) is None
    run = tracking.log_study(experiment="iqabench", run_name="r", **inputs)
    client = mlflow.MlflowClient()
    assert {f.path for f in client.list_artifacts(run.run_id, "figures")} == {"figures/distortions.png"}
    assert not any(k.startswith("artifact_in.") for k in client.get_run(run.run_id).data.tags)


def test_make_repro_counts_only_a_finished_parent_as_logged(tmp_path, monkeypatch):
    """`python -m iqabench.mlflow_ui logged` (make repro) reads the store with sqlite3: a FAILED parent, another
    experiment, another dvc.lock, a missing store or a text file named mlflow.db hold no run of these results."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    inputs = fakestudy.inputs(tmp_path)
    lock = inputs["tags"]["dvc_lock"]
    assert not mlflow_ui.logged(lock, uri=uri)  # no store yet
    with monkeypatch.context() as patched:
        _fail_logging_files(patched)
        assert tracking.log_study(experiment="iqabench", run_name="broken", **inputs) is None
    assert not mlflow_ui.logged(lock, uri=uri)  # only a FAILED parent holds them
    assert tracking.log_study(experiment="iqabench", run_name="good", **inputs)
    assert mlflow_ui.logged(lock, uri=uri)
    assert not mlflow_ui.logged("0" * 16, uri=uri) and not mlflow_ui.logged(lock, "other", uri=uri)
    (tmp_path / "text.db").write_text("hello")
    assert not mlflow_ui.logged(lock, uri=f"sqlite:///{tmp_path / 'text.db'}")
