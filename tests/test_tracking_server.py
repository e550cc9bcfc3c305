"""MLflow logging against a real tracking server, and what happens when there is none.

The server is a real `mlflow server` subprocess with a sqlite store and proxied
artifacts in tmp_path, so the REST path the team's shared server uses is the
one exercised (a file store would skip it).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from iqabench import compare, mlflow_ui, tracking

import fakestudy
from mlflowproc import free_port, running

SERVER_START_S = 120  # a cold `mlflow server` takes ~30 s on two shared cores


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]
    # as `make ui`: no GenAI job runner
    with running(argv, port=port, cwd=root, log=root / "server.log", timeout=SERVER_START_S,
                 env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}) as (url, _):
        yield url


pytestmark = pytest.mark.usefixtures("restore_tracking_uri")  # conftest.py


@pytest.fixture
def study_inputs(tmp_path):
    return fakestudy.inputs(tmp_path)


@pytest.mark.slow
def test_log_study_round_trip_through_a_real_server(server, study_inputs, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    run = tracking.log_study(experiment="iqabench-test", run_name="01234567 HEAD params", **study_inputs)
    assert run is not None and run.url.startswith(f"{server}/#/experiments/{run.experiment_id}/runs/{run.run_id}")

    client = mlflow.MlflowClient(tracking_uri=server)
    experiment = client.get_experiment(run.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")  # the server's, not a local path
    assert f"mlflow.sharedViewState.{mlflow_ui.VIEW_KEY}" in experiment.tags
    parent = client.get_run(run.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == pytest.approx(study_inputs["metrics"])
    assert parent.data.params["evaluate.alphas"] == "[0.1]"
    assert parent.data.tags["git_commit"] == "0123456789abcdef"
    assert parent.data.tags["mlflow.note.content"] == study_inputs["description"]
    # "Created by" and "Source" as on the nested runs (mlflow.start_run adds them; create_run does not).
    assert parent.data.tags["mlflow.user"] and parent.data.tags["mlflow.source.name"]
    assert {(d.dataset.name, d.dataset.digest) for d in parent.inputs.dataset_inputs} == {
        ("synthetic-single", "0" * 16), ("synthetic-mixed", "1" * 16)}

    children = client.search_runs([run.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'")
    # Model ids need no sanitising: fr:gmsd is a tag, a run name and part of metric keys as it is.
    assert {child.data.tags["model"]: child.data.metrics["within.synthetic-single.plcc"] for child in children} \
        == pytest.approx({"contrique": 0.61, "arniqa": 0.55, "fr:gmsd": 0.83})
    assert "srcc/synthetic-single/fr:gmsd" in parent.data.metrics
    contrique = next(c for c in children if c.data.tags["model"] == "contrique")
    assert contrique.data.metrics["cross.synthetic-single_to_synthetic-mixed.srcc"] == pytest.approx(0.41)
    trained = client.search_runs([run.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{contrique.info.run_id}'")
    on_single = next(t for t in trained if t.data.tags["train_dataset"] == "synthetic-single")
    assert on_single.data.metrics == pytest.approx({"within.srcc": 0.61, "within.plcc": 0.61,
                                                    "cross.synthetic-mixed.srcc": 0.41,
                                                    "cross.synthetic-mixed.plcc": 0.5})
    assert on_single.data.params == {"n_splits": "10", "alphas": "[0.1]"}
    assert {(d.dataset.name, d.tags[0].value) for d in on_single.inputs.dataset_inputs} == {
        ("synthetic-single", "train"), ("synthetic-mixed", "test")}

    mlflow.set_tracking_uri(server)
    within = mlflow.load_table("tables/within.json", run_ids=[run.run_id])
    pd.testing.assert_frame_equal(within.drop(columns="run_id", errors="ignore"),
                                  study_inputs["tables"]["tables/within.json"], check_dtype=False)
    assert {a.path for a in client.list_artifacts(run.run_id)} >= {"srcc_table.json", "figures", "tables"}
    figure = Path(client.download_artifacts(run.run_id, "figures/scatter.png", str(tmp_path / "download")))
    assert figure.read_bytes() == study_inputs["artifacts"]["figures"][0].read_bytes()

    # A second run at another commit and seed: compare lines both up, oldest first.
    newer = fakestudy.inputs(tmp_path, shift=0.02, seed=1, commit="fedcba9876543210")
    assert tracking.log_study(experiment="iqabench-test", run_name="fedcba98 seed=1", **newer)
    both = compare.load("iqabench-test", tracking_uri=server)
    assert list(both.runs["commit"]) == ["0123456789abcdef", "fedcba9876543210"]  # no nested runs
    assert compare.params_diff(both.runs) == {"seed": ["0", "1"]}
    chosen = compare.select(both.values, models=["contrique"], datasets=["synthetic-single"])
    assert sorted(chosen["value"]) == pytest.approx([0.61, 0.63])
    with pytest.raises(compare.CompareError, match="no experiment 'nope'.*iqabench-test"):
        compare.load("nope", tracking_uri=server)


def test_local_store_is_portable_and_names_runs_apart(study_inputs, monkeypatch, tmp_path, capsys):
    """Without a server: the experiment's location is mlflow-artifacts:/ (no absolute path), the files land
    in mlartifacts/ beside mlflow.db, a second run of the same name gets "#2", and an encoder is logged as an
    MLflow model and registered once per distinct file."""
    import mlflow

    from iqabench.models import encoders

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    (tmp_path / "store").mkdir()
    encoders.save(encoders.Encoder(width=4), tmp_path / "encoder.pt")
    first = tracking.log_study(experiment="iqabench", run_name="01234567 HEAD params",
                               encoders={"contrique": tmp_path / "encoder.pt"}, **study_inputs)
    capsys.readouterr()
    again = tracking.log_study(experiment="iqabench", run_name="01234567 HEAD params",
                               encoders={"contrique": tmp_path / "encoder.pt"}, **study_inputs)
    assert again == first  # the same dvc.lock and commit: already logged, not a copy on the leaderboard
    assert (f"MLflow: these results (dvc.lock {study_inputs['tags']['dvc_lock']}, commit 0123456789abcdef) are "
            "already logged as run '01234567 HEAD params'; not logged twice") in capsys.readouterr().out
    other = {**study_inputs, "tags": {**study_inputs["tags"], "dvc_lock": "0ddba11feedface0"}}
    second = tracking.log_study(experiment="iqabench", run_name="01234567 HEAD params",
                                encoders={"contrique": tmp_path / "encoder.pt"}, **other)
    assert first and second and (first.name, second.name) == ("01234567 HEAD params", "01234567 HEAD params #2")
    assert len(tracking.parent_names(first.experiment_id, mlflow.MlflowClient())) == 2
    client = mlflow.MlflowClient()
    assert client.get_experiment(first.experiment_id).artifact_location == "mlflow-artifacts:/iqabench"
    assert client.get_run(first.run_id).info.artifact_uri.startswith("mlflow-artifacts:/iqabench/")
    assert (tmp_path / "store" / "mlartifacts" / "iqabench" / first.run_id / "artifacts" / "srcc_table.json").is_file()
    (version,) = client.search_model_versions("name = 'iqabench-contrique-encoder'")  # not registered twice
    # The second run reuses that version: its contrique run's page names it all the same.
    (row_run,) = client.search_runs([second.experiment_id], f"tags.mlflow.parentRunId = '{second.run_id}' and "
                                                            "tags.model = 'contrique'")
    assert "`models:/iqabench-contrique-encoder/1`" in row_run.data.tags["mlflow.note.content"]
    assert version.tags["sha256"]
    # What the registry page shows: what the version maps, from which file, how to load it.
    assert "encoder.pt" in version.description and "images B x 3 x H x W" in version.description
    assert "models:/iqabench-contrique-encoder/1" in version.description
    assert "`contrique`" in client.get_registered_model("iqabench-contrique-encoder").description
    features = mlflow.pytorch.load_model("models:/iqabench-contrique-encoder/1")(torch.rand(2, 3, 40, 56))
    assert tuple(features.shape) == (2, encoders.Encoder(width=4).out_dim)  # any image size: a trace, not export


def test_a_large_file_identical_to_an_earlier_runs_is_referenced_not_copied(study_inputs, monkeypatch, tmp_path):
    """The distortion gallery (~1.7 MB) changes only with `synthesize`: logged once, later runs name that run."""
    import mlflow
    import numpy as np
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    (tmp_path / "store").mkdir()
    gallery = tmp_path / "distortions.png"
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)  # incompressible: > 1 MB
    Image.fromarray(noise).save(gallery)
    assert gallery.stat().st_size >= tracking.SHARED_BYTES
    study_inputs["artifacts"] = {"figures": [*study_inputs["artifacts"]["figures"], gallery]}
    first, second = (tracking.log_study(experiment="iqabench", run_name="r",
                                        **{**study_inputs, "tags": {**study_inputs["tags"], "dvc_lock": lock}})
                     for lock in ("00000000000000a1", "00000000000000a2"))  # two pipeline states
    client = mlflow.MlflowClient()
    stored = {run.run_id: {f.path for f in client.list_artifacts(run.run_id, "figures")} for run in (first, second)}
    assert stored[first.run_id] == {"figures/scatter.png", "figures/distortions.png"}
    assert stored[second.run_id] == {"figures/scatter.png"}  # small files are always logged (Compare needs them)
    assert client.get_run(second.run_id).data.tags["artifact_in.figures/distortions.png"].startswith(
        f"run {first.run_id} ")
    Image.fromarray(noise[::-1]).save(gallery)  # a new gallery is logged again
    third = tracking.log_study(experiment="iqabench", run_name="r",
                               **{**study_inputs, "tags": {**study_inputs["tags"], "dvc_lock": "00000000000000a3"}})
    assert "figures/distortions.png" in {f.path for f in client.list_artifacts(third.run_id, "figures")}


def test_log_study_without_a_server_warns_and_returns_none_quickly(study_inputs, monkeypatch, capsys):
    import mlflow  # noqa: F401  (imported before the clock starts: a cold import on busy cores takes seconds)

    port = free_port()  # bound then released: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for setting in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(setting, "")  # recorded, so the defaults fail_fast sets are undone after the test
        monkeypatch.delenv(setting)
    started = time.monotonic()
    assert tracking.log_study(experiment="iqabench-test", run_name="offline", **study_inputs) is None
    # fail_fast's defaults: one retry after ~1 s. MLflow's own (5 retries, backoff factor 2) wait over a minute
    # on a refused connection, so the bound separates the two with room for any load.
    assert time.monotonic() - started < 45
    warning = capsys.readouterr().err
    assert "WARNING: MLflow logging to" in warning and str(port) in warning
    assert "dvc repro -s -f report" in warning


def _read_only(path: Path, request) -> None:
    """chmod for a user; root writes through the mode bits, so it also gets the immutable flag, where it may."""
    import shutil
    import subprocess

    path.chmod(0o555 if path.is_dir() else 0o444)
    request.addfinalizer(lambda: path.chmod(0o755 if path.is_dir() else 0o644))
    if os.access(path, os.W_OK):
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("this user writes through read-only modes and cannot set the immutable flag")
        request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(path)], check=True))


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_local_store_is_one_line_and_left_as_it_was(study_inputs, monkeypatch, tmp_path, capfd, request,
                                                               what):
    """`dvc repro -s -f report` with a read-only mlflow.db printed ~90 lines of SQLAlchemy traceback, then a
    warning quoting "(raised as a result of Query-invoked autoflush ..." and advising to start the server."""
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert tracking.log_study(experiment="iqabench", run_name="first", **study_inputs)
    before = {p: p.read_bytes() for p in sorted(store.parent.rglob("*")) if p.is_file()}
    capfd.readouterr()
    _read_only(store if what == "file" else store.parent, request)
    assert tracking.log_study(experiment="iqabench", run_name="second", **study_inputs) is None
    err = capfd.readouterr().err
    assert err.startswith("WARNING: mlflow.db is read-only: ") and len(err.strip().splitlines()) == 1, err
    assert (f"{store} cannot be written" if what == "file" else f"its folder {store.parent} cannot be written") in err
    assert "The DVC outputs in reports/ are complete" in err and "dvc repro -s -f report" in err
    assert "Traceback" not in err and "autoflush" not in err and "server" not in err
    assert {p: p.read_bytes() for p in sorted(store.parent.rglob("*")) if p.is_file()} == before


def _view_state(experiment) -> dict:
    import base64
    import json
    import zlib

    packed = json.loads(experiment.tags[f"mlflow.sharedViewState.{mlflow_ui.VIEW_KEY}"])["state"]
    assert packed.startswith("deflate;")
    return json.loads(zlib.decompress(base64.b64decode(packed.split(";", 1)[1])))


def test_the_leaderboard_view_shows_every_run_name_whole(study_inputs, monkeypatch, tmp_path):
    """MLflow's default run name column (190 px) cut `ef312f00+dirty HEAD params` to `ef312f00+dirty HEA...`:
    the saved view widens it to the longest parent's name, the short one logged last included."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    long_name = "fedcba98+dirty waxy-vats evaluate.n_splits=5"
    assert tracking.log_study(experiment="iqabench", run_name=long_name, **study_inputs)
    later = {**study_inputs, "tags": {**study_inputs["tags"], "dvc_lock": "00000000000000b2"}}  # another state
    run = tracking.log_study(experiment="iqabench", run_name="01234567 HEAD params", **later)
    state = _view_state(mlflow.MlflowClient().get_experiment(run.experiment_id))
    width = state["columnWidths"][mlflow_ui.RUN_NAME_COLUMN]
    assert width == mlflow_ui.run_name_width([long_name]) and width >= 60 + 7 * len(long_name)
    assert state["columnOrder"][:4] == ["0", mlflow_ui.RUN_NAME_COLUMN, "runDateAndNestInfo", "duration"]
    # In the order the report hands them over (tracking.headline: dataset by dataset, best first), not sorted.
    assert state["selectedColumns"] == [f"metrics.`{k}`" for k in study_inputs["metrics"] if k.startswith("srcc/")]
    assert state["selectedColumns"][0] == "metrics.`srcc/synthetic-single/fr:gmsd`"
    # The view lists parents only (the UI pages 100 runs; each parent has a nested run per model and training set).
    client = mlflow.MlflowClient()
    listed = client.search_runs([run.experiment_id], state["searchFilter"])
    assert sorted(r.info.run_name for r in listed) == sorted([long_name, "01234567 HEAD params"])
    assert len(client.search_runs([run.experiment_id])) > len(listed)
    # A name longer than the cap is cut in the table rather than pushing every SRCC column off screen.
    assert mlflow_ui.run_name_width(["x" * 300]) == mlflow_ui.RUN_NAME_MAX_PX
    # `make ui` prints the link to this view (MLflow 3.17 opens an experiment on its GenAI overview otherwise),
    # reading the store without changing it.
    store = tmp_path / "mlflow.db"
    before = store.stat().st_mtime_ns
    assert mlflow_ui.ui_link(uri=f"sqlite:///{store}") == \
        f"Open {mlflow_ui.view_url(run.experiment_id, base=mlflow_ui.UI_URL)}"
    assert store.stat().st_mtime_ns == before
    assert "no experiment 'other'" in mlflow_ui.ui_link("other", uri=f"sqlite:///{store}")
    assert "run `make repro` (after a `dvc repro` that ran nothing, `dvc repro -s -f report` logs it)" in \
        mlflow_ui.ui_link(uri=f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
