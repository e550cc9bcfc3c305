"""MLflow logging against a real tracking server, and what happens when there is none.

The server is a real `mlflow server` subprocess with a sqlite store and proxied
artifacts in tmp_path, so the REST path the team's shared server uses is the
one exercised (a file store would skip it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from iqabench import compare, tracking

SERVER_START_S = 120  # a cold `mlflow server` takes ~30 s on two shared cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer /health in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port, log = free_port(), root / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as sink:
        # Own session: the server forks a uvicorn worker, and teardown must stop both.
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            stdout=sink, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        wait_for_health(url, process, log, SERVER_START_S)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture(autouse=True)
def restore_tracking_uri():
    # mlflow.set_tracking_uri (called by log_study) sets a process global and MLFLOW_TRACKING_URI;
    # later tests must not inherit a server that is gone.
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(None)
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def study_inputs(tmp_path):
    figure = tmp_path / "reports" / "scatter.png"
    figure.parent.mkdir()
    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)).save(figure)
    within = pd.DataFrame({"model": ["contrique", "random"], "dataset": ["synthetic-single"] * 2,
                           "n_images": [400, 400], "n_splits": [10, 10], "srcc": [0.91, 0.42],
                           "plcc": [0.92, 0.45]})
    cross = pd.DataFrame({"model": ["contrique"], "train": ["synthetic-single"], "test": ["synthetic-mixed"],
                          "srcc": [0.71], "plcc": [0.70], "n_test": [400]})
    metrics = {"within": {"contrique": {"synthetic-single": {"srcc": 0.91, "plcc": 0.92}},
                          "random": {"synthetic-single": {"srcc": 0.42, "plcc": 0.45}}},
               "cross": {"contrique": {"synthetic-single->synthetic-mixed": {"srcc": 0.71, "plcc": 0.70}}}}
    per_model = {m: {"within": metrics["within"][m], "cross": metrics["cross"].get(m, {})}
                 for m in ("contrique", "random")}
    return dict(params={"seed": 0, "evaluate": {"n_splits": 10, "alphas": [0.1]}}, metrics=metrics,
                eval_params={"n_splits": 10, "alphas": [0.1]},
                per_model=per_model, tables={"within": within, "cross": cross}, artifacts=[figure],
                tags={"git_commit": "0123456789abcdef", "dvc_lock": "feedfacecafebeef",
                      "manifest.synthetic-single": "aaaabbbbccccdddd"})


@pytest.mark.slow
def test_log_study_round_trip_through_a_real_server(server, study_inputs, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    run_id = tracking.log_study(experiment="iqabench-test", run_name="repro 01234567", **study_inputs)
    assert run_id is not None

    client = mlflow.MlflowClient(tracking_uri=server)
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["within.contrique.synthetic-single.srcc"] == pytest.approx(0.91)
    assert parent.data.metrics["cross.contrique.synthetic-single_to_synthetic-mixed.srcc"] == pytest.approx(0.71)
    assert parent.data.params["evaluate.alphas"] == "[0.1]"
    assert parent.data.tags["git_commit"] == "0123456789abcdef"
    assert parent.data.tags["manifest.synthetic-single"] == "aaaabbbbccccdddd"

    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert {child.data.tags["model"]: child.data.metrics["within.synthetic-single.srcc"] for child in children} \
        == pytest.approx({"contrique": 0.91, "random": 0.42})
    # Under each model, one run per training set, tagged so a training set can be lined up across models.
    contrique = next(c for c in children if c.data.tags["model"] == "contrique")
    (trained_on,) = client.search_runs([parent.info.experiment_id],
                                       filter_string=f"tags.mlflow.parentRunId = '{contrique.info.run_id}'")
    assert trained_on.data.tags["train_dataset"] == "synthetic-single"
    assert trained_on.data.metrics == pytest.approx({"within.srcc": 0.91, "within.plcc": 0.92,
                                                     "cross.synthetic-mixed.srcc": 0.71,
                                                     "cross.synthetic-mixed.plcc": 0.70})
    assert trained_on.data.params == {"n_splits": "10", "alphas": "[0.1]"}

    mlflow.set_tracking_uri(server)
    within = mlflow.load_table("tables/within.json", run_ids=[run_id])
    pd.testing.assert_frame_equal(within.drop(columns="run_id", errors="ignore"),
                                  study_inputs["tables"]["within"], check_dtype=False)
    figure = Path(client.download_artifacts(run_id, "reports/scatter.png", str(tmp_path / "download")))
    assert figure.read_bytes() == study_inputs["artifacts"][0].read_bytes()

    # A second run at another commit: compare picks runs by commit and columns by model and dataset.
    newer = dict(study_inputs, tags={**study_inputs["tags"], "git_commit": "fedcba9876543210"})
    newer["metrics"] = {**study_inputs["metrics"],
                        "within": {**study_inputs["metrics"]["within"],
                                   "contrique": {"synthetic-single": {"srcc": 0.93, "plcc": 0.94}}}}
    assert tracking.log_study(experiment="iqabench-test", run_name="repro fedcba98", **newer)
    both = compare.compare_runs("iqabench-test", tracking_uri=server)
    assert list(both["commit"]) == ["fedcba9876543210", "0123456789abcdef"]  # newest first, no nested runs
    assert list(both.columns) == [*compare.RUN_COLUMNS, "within.contrique.synthetic-single.srcc",
                                  "within.random.synthetic-single.srcc"]
    assert list(both["within.contrique.synthetic-single.srcc"]) == pytest.approx([0.93, 0.91])
    one = compare.compare_runs("iqabench-test", commit="0123", models=["contrique"], datasets=["synthetic-mixed"],
                               statistics=["srcc", "plcc"], sections=["cross"], tracking_uri=server)
    assert list(one["run_name"]) == ["repro 01234567"]
    assert list(one.columns[len(compare.RUN_COLUMNS):]) == [
        "cross.contrique.synthetic-single_to_synthetic-mixed.srcc",
        "cross.contrique.synthetic-single_to_synthetic-mixed.plcc"]
    with pytest.raises(compare.CompareError, match="no experiment 'nope'.*iqabench-test"):
        compare.compare_runs("nope", tracking_uri=server)

    app = typer.Typer()
    app.command("compare")(compare.compare_command)
    shown = CliRunner().invoke(app, ["--experiment", "iqabench-test", "--tracking-uri", server,
                                     "--model", "contrique"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "repro fedcba98" in shown.output and "0.9300" in shown.output and "random" not in shown.output


def test_log_study_without_a_server_warns_and_returns_none_quickly(study_inputs, monkeypatch, capsys):
    port = free_port()  # bound then released: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    started = time.monotonic()
    assert tracking.log_study(experiment="iqabench-test", run_name="offline", **study_inputs) is None
    assert time.monotonic() - started < 15
    warning = capsys.readouterr().err
    assert "WARNING: MLflow logging to" in warning and str(port) in warning
    assert "dvc repro -s -f report" in warning
