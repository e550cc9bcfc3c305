"""What a user sees in the MLflow UI, in a real headless browser (skipped without Chromium and Playwright).

A store is filled with two runs of a small fake study through tracking.log_study (no pipeline run),
`mlflow ui` serves it on 127.0.0.1 with one worker, and Debian's `chromium` (driven by Playwright's
Python client) opens the link `dvc repro` prints. The run table with one SRCC column per model and
dataset must be the page it lands on. ``IQABENCH_UPDATE_SCREENSHOT=1`` also writes docs/mlflow-ui.png.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fakestudy
from mlflowproc import free_port, running
from iqabench import mlflow_ui, provenance, tracking

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("IQABENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python client is not installed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_START_S = 180   # `mlflow ui` on two busy cores
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as `make ui`: no GenAI job runner
COLUMN_IDS = "() => Array.from(document.querySelectorAll('[col-id]'), e => e.getAttribute('col-id'))"
# True when no element under e is cut (an ellipsis leaves scrollWidth above clientWidth); 0-1 px wide ones are
# hidden (a screen reader's colour name) or empty.
WHOLE = "e => Array.from(e.querySelectorAll('*')).every(c => c.clientWidth <= 1 || c.scrollWidth <= c.clientWidth + 1)"
PAGE_S = 300       # the first page load compiles MLflow's JavaScript bundle; two busy cores are slow


FAILED_NAME = "0badf00d report failed midway"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    from iqabench.models import encoders

    encoders.save(encoders.Encoder(width=4), root / "contrique.pt")  # the registry's page has a model to show
    try:
        # Names as `dvc repro` gives them; the second is longer than MLflow's default name column shows.
        runs = []
        for shift, seed, commit, dirty, exp, diff in ((0.0, 0, "0123456789abcdef", False, "", {}),
                                                      (0.02, 1, "fedcba9876543210", True, "waxy-vats", {"seed": (0, 1)})):
            study = fakestudy.inputs(root, shift=shift, seed=seed, commit=commit)
            runs.append(tracking.log_study(
                experiment="iqabench", encoders={"contrique": root / "contrique.pt"},
                run_name=provenance.run_name(commit, dirty, exp, diff, study["tags"]["dvc_lock"]), **study))
        # A report that failed midway: a FAILED parent with a leaderboard column, which the view must not list.
        import mlflow

        client = mlflow.MlflowClient()
        failed = client.create_run(runs[0].experiment_id, run_name=FAILED_NAME)
        client.log_metric(failed.info.run_id, tracking.headline_key("contrique", fakestudy.DATASETS[0]), 0.99)
        client.set_terminated(failed.info.run_id, "FAILED")
    finally:
        mp.undo()
        import mlflow

        mlflow.set_tracking_uri(None)
    assert all(runs)
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--artifacts-destination",
            str(root / tracking.ARTIFACTS), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running(argv, port=port, cwd=root, log=root / "ui.log", timeout=UI_START_S, env=UI_ENV) as (base, pid):
        yield base, runs, root, pid  # the pid is the UI's own session: every process it started


@pytest.fixture
def page(ui, tmp_path):
    with playwright.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1440, "height": 810})
        try:
            yield context.new_page()
        finally:
            context.close()


def test_the_printed_link_lands_on_the_run_table_with_the_leaderboard_columns(ui, page, tmp_path):
    base, runs, *_ = ui
    newest = runs[-1]
    page.goto(mlflow_ui.view_url(newest.experiment_id, base=base))
    page.get_by_text("Run Name").first.wait_for(timeout=PAGE_S * 1000)
    assert f"/experiments/{newest.experiment_id}/runs" in page.url  # not the GenAI overview
    # Both runs are rows, under the names that tell them apart; the report that failed midway is not.
    for run in runs:
        page.get_by_text(run.name).first.wait_for(timeout=PAGE_S * 1000)
    assert page.get_by_text(FAILED_NAME).count() == 0 and page.get_by_text("0.99", exact=True).count() == 0
    # Dataset by dataset, best first (tracking.headline): synthetic-single's winner, fr:gmsd, is the first column.
    columns = list(tracking.headline({m: {ds: {"srcc": 1.0 if m == "fr:gmsd" else 0.5} for ds in fakestudy.DATASETS}
                                      for m in fakestudy.MODELS}, list(fakestudy.DATASETS)))
    assert columns[0] == tracking.headline_key("fr:gmsd", "synthetic-single")
    _close_assistant(page)
    page.locator(f"[col-id='metrics.`{columns[0]}`']").first.wait_for(timeout=PAGE_S * 1000)
    # Each run's name is whole in its cell (MLflow's default width cut "fedcba98+dirty waxy-vats seed=1").
    names = page.locator(f"[role=gridcell][col-id='{mlflow_ui.RUN_NAME_COLUMN}']")
    assert names.count() >= len(runs)
    for i in range(names.count()):
        assert names.nth(i).evaluate(WHOLE), f"run name cut: {names.nth(i).inner_text()!r}"
    # The first leaderboard column is on screen without scrolling, its name whole (not cut to "srcc/syn...").
    header = page.locator(f"[role=columnheader][col-id='metrics.`{columns[0]}`']").first
    box = header.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1440, "the first leaderboard column is off screen"
    assert header.evaluate(WHOLE), "its name is cut"
    # The grid renders the columns in view: scroll it sideways to meet the others.
    seen = set(page.evaluate(COLUMN_IDS))
    page.evaluate("() => document.querySelectorAll('.ag-body-horizontal-scroll-viewport, .ag-center-cols-viewport')"
                  ".forEach(e => { e.scrollLeft = e.scrollWidth; })")
    time.sleep(1)
    seen |= set(page.evaluate(COLUMN_IDS))
    missing = [c for c in columns if f"metrics.`{c}`" not in seen]
    assert not missing, f"leaderboard columns missing from the run table: {missing}; columns: {sorted(seen)}"
    page.evaluate("() => document.querySelectorAll('.ag-body-horizontal-scroll-viewport, .ag-center-cols-viewport')"
                  ".forEach(e => { e.scrollLeft = 0; })")
    # The values are in the table: the first column, fr:gmsd's SRCC on synthetic-single in the newer run
    # (fakestudy: 0.83 + 0.02).
    page.get_by_text("0.85", exact=True).first.wait_for(timeout=PAGE_S * 1000)
    _close_assistant(page)
    page.screenshot(path=str(tmp_path / "mlflow-ui.png"))
    if os.environ.get("IQABENCH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "mlflow-ui.png", REPO / "docs" / "mlflow-ui.png")


def test_the_run_page_opens_on_the_leaderboard(ui, page):
    base, runs, *_ = ui
    run = runs[-1]
    page.goto(mlflow_ui.run_url(run.experiment_id, run.run_id, base=base))
    page.get_by_text("Leaderboard").first.wait_for(timeout=PAGE_S * 1000)
    assert run.name in page.inner_text("body")


def test_make_ui_suits_two_cores(ui):
    """`make ui` serves with one worker and without MLflow 3's job runner, which by default starts 8 more
    Python processes (~2 GB, polling) for GenAI jobs this project has none of; the UI above ran the same way."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    recipe = subprocess.run(["make", "-n", "ui"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "ui_link()" in recipe  # it prints the link to the run table before serving
    command = next(line for line in recipe.splitlines() if "mlflow ui" in line)
    assert "--workers 1" in command and all(f"{k}={v}" in command for k, v in UI_ENV.items()), command
    started = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(ui[-1])], capture_output=True,
                             text=True).stdout.splitlines()
    assert len(started) <= 2, "\n".join(started)  # mlflow ui and its one uvicorn worker


def test_compare_shows_the_runs_artifacts_side_by_side(ui, page):
    """MLflow's Compare lists the artifacts both runs have; before the stable names it said "No common
    artifacts to display"."""
    base, runs, *_ = ui
    ids = ",".join(f'"{run.run_id}"' for run in runs)
    page.goto(f"{base}/#/compare-runs?runs=[{ids}]&experiments=[\"{runs[0].experiment_id}\"]&{mlflow_ui.ML_WORKFLOW}")
    page.get_by_text("srcc_table.json", exact=True).first.wait_for(timeout=PAGE_S * 1000)
    assert page.get_by_text("No common artifacts").count() == 0
    for run in runs:
        page.get_by_text(run.name, exact=True).first.wait_for(timeout=PAGE_S * 1000)


def test_the_registry_shows_the_encoder_and_what_it_maps(ui, page):
    base, *_ = ui
    name = tracking.encoder_model_name("contrique")
    page.goto(f"{base}/#/models?{mlflow_ui.ML_WORKFLOW}")
    page.get_by_text(name, exact=True).first.wait_for(timeout=PAGE_S * 1000)
    page.goto(f"{base}/#/models/{name}/versions/1?{mlflow_ui.ML_WORKFLOW}")
    page.get_by_text("TorchScript trace", exact=False).first.wait_for(timeout=PAGE_S * 1000)


def _close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant panel beside the table; the screenshot shows the table."""
    panel = page.get_by_text("MLflow Assistant")
    if panel.count():
        close = page.locator("button[aria-label*='lose']").last
        if close.count():
            close.click()
            time.sleep(1)
