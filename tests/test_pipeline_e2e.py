"""The real pipeline, end to end, on a still smaller parameter set in a temporary copy of the repository.

SMALL is the smallest set that still tests what these tests claim: both embedded sets with enough contents
for content-disjoint splits, pretraining long enough for its loss to fall, more than one split (paired
comparisons), and every stage and row of the default. Whether the pretrained encoder beats its random-weight
twin is not asked here: on 100 images per set one short pretraining run is too noisy to say (SRCC 0.09 to
0.39 measured on the same settings), so the default pipeline answers it, under the seed-aware gate that CI
runs after `make test` (`make repro`, `iqabench check`). No test here has a wall-clock limit a slow or busy
machine could trip: the subprocess timeout only guards against a hang.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from repo_copy import copy_repo
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SMALL = {
    # 96 px: NIQE's patch size; 4 photos x 5 patches x 5 versions = 100 images and 20 contents per set
    "prepare": {"patch_size": 96, "max_patches_per_photo": 5, "versions_per_patch": 5},
    "synthesize": {"n_images": 1024, "shard_size": 512},
    "pretrain": {"contrique": {"steps": 40, "batch_size": 64, "checkpoint_every": 20},
                 "arniqa": {"steps": 10, "batch_size": 16, "checkpoint_every": 5}},
    "evaluate": {"n_splits": 3},
    "finetune": {"n_splits": 1, "steps": 5},
    "mixed": {"steps": 100},
}
PATCH = SMALL["prepare"]["patch_size"]
HANG = 4 * 3600  # seconds: only a hung process gets near this
ALWAYS_RUNS = {"fingerprint"}  # lists input files on every repro (always_changed); unchanged files re-run nothing

pytestmark = pytest.mark.slow


def _merge(base: dict, small: dict) -> None:
    """Set SMALL's keys in params, section by section (pretrain: encoder by encoder)."""
    for key, value in small.items():
        if isinstance(value, dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e") / "repo"
    copy_repo(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    _merge(params, SMALL)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.lock").unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, work, env)
    first = _run([BIN / "dvc", "repro"], work, env)
    return work, env, first


def test_tables_exist_and_values_are_in_range(pipeline):
    work, _, _ = pipeline
    within = pd.read_csv(work / "reports/within.csv")
    assert set(within["dataset"]) == {"synthetic-single", "synthetic-mixed"}
    models = yaml.safe_load((work / "params.yaml").read_text())["models"]
    assert set(within["model"]) == set(models)
    for col in ("srcc", "plcc", "krcc"):
        assert within[col].between(-1, 1).all()
    cross = pd.read_csv(work / "reports/cross.csv")
    assert len(cross) == len(models) * 4  # per model: 2 off-diagonal pairs + 2 diagonal cells
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["within"]["contrique"]["synthetic-single"]["srcc"] == pytest.approx(
        within.set_index(["model", "dataset"]).loc[("contrique", "synthetic-single"), "srcc"], abs=1e-3)
    for png in ("srcc.png", "cross_srcc.png", "scatter.png", "pretrain_loss.png", "distortions.png"):
        assert (work / "reports" / png).read_bytes()[:4] == b"\x89PNG"
    assert "pseudo-MOS" in (work / "reports/results.md").read_text()
    # Wall-clock figures go to the timing JSONs, never into a DVC output (its hash would change on every re-run).
    assert "seconds" not in pd.read_csv(work / "reports/finetune.csv").columns
    assert json.loads((work / "reports/timings/finetune.json").read_text())["training_seconds"] > 0


def test_pretraining_lowered_its_loss_and_its_encoder_is_not_random(pipeline):
    work, _, _ = pipeline
    history = pd.read_csv(work / "data/encoders/contrique_history.csv")
    assert history["loss"].iloc[-3:].mean() < history["loss"].iloc[:3].mean(), history
    within = pd.read_csv(work / "reports/within.csv").set_index(["model", "dataset"])
    features = {m: np.load(work / "data/features/synthetic-single.npz")[m] for m in ("contrique", "random")}
    assert features["contrique"].shape == features["random"].shape
    assert not np.allclose(features["contrique"], features["random"])  # the trained weights reached extract
    assert within.loc[("contrique", "synthetic-single"), "srcc"] != within.loc[("random", "synthetic-single"), "srcc"]


def test_mlflow_run_is_readable_back(pipeline):
    work, env, _ = pipeline
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["iqabench"])
    nested = runs["tags.mlflow.parentRunId"].notna()
    params = yaml.safe_load((work / "params.yaml").read_text())
    # One run per model, and under each one run per training set.
    assert nested.sum() == len(params["models"]) * (1 + len(params["datasets"]))
    assert set(runs["tags.train_dataset"].dropna()) == set(params["datasets"])
    runs = runs[~nested]
    assert len(runs) == 1
    run = runs.iloc[0]
    assert 0 < run["metrics.srcc/synthetic-single/contrique"] <= 1
    assert run["tags.git_commit"]
    # The tag names the final dvc.lock: the entries of every stage upstream of report, as DVC locked them.
    from iqabench import provenance
    assert run["tags.dvc_lock"] == provenance.lock_digest("report", work / "dvc.lock", work / "dvc.yaml")


def test_make_repro_logs_what_a_fresh_clone_skipped_and_never_twice(pipeline, tmp_path):
    # A fresh clone's `dvc repro` skips `report` (its outputs are committed), so MLflow held nothing and every hint
    # ("run dvc repro") went in a circle. `make repro` asks this, and runs `dvc repro -s -f report` on exit 1.
    work, env, _ = pipeline
    logged = [BIN / "python", "-m", "iqabench.mlflow_ui", "logged"]
    assert _run(logged, work, env, check=False).returncode == 0  # the pipeline's own run holds this dvc.lock
    clone = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'clone.db'}"}  # a store without it
    assert _run(logged, work, clone, check=False).returncode == 1
    again = _run([BIN / "dvc", "repro", "-s", "-f", "report"], work, env)
    assert "are already logged as run" in again.stdout  # the report stage's own check: no second parent run
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["iqabench"])
    assert runs["tags.mlflow.parentRunId"].isna().sum() == 1


def test_nothing_reruns_and_an_evaluate_param_changes_only_the_stages_that_read_it(pipeline):
    work, env, first = pipeline
    assert "Running stage 'pretrain@contrique'" in first.stdout
    again = _run([BIN / "dvc", "repro"], work, env)
    assert set(re.findall(r"Running stage '([^']+)'", again.stdout)) <= ALWAYS_RUNS
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["evaluate"]["n_splits"] = 4
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # `dvc status` names the stages whose own inputs changed (DVC re-runs what lies downstream of them); the
    # expensive upstream stages (prepare, synthesize, pretrain, extract) must not be among them. `mixed`
    # draws the protocol's splits, so it reads evaluate.n_splits too.
    status = json.loads(_run([BIN / "dvc", "status", "--json"], work, env).stdout)
    assert set(status) - ALWAYS_RUNS == {"evaluate", "mixed"}, status
    params["evaluate"]["n_splits"] = SMALL["evaluate"]["n_splits"]  # back as it was: later tests read outputs
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_cli_scores_images_and_rejects_non_images(pipeline, monkeypatch):
    work, env, _ = pipeline
    image = next((work / "data/prepared/synthetic-single/images").glob("*.png"))
    ok = _run([BIN / "iqabench", "score", str(image)], work, env)  # the installed command, once
    header, row = ok.stdout.strip().splitlines()  # not a terminal: CSV
    assert header == "image,width,height,quality" and row.startswith(f"{image},{PATCH},{PATCH},")
    assert 0 <= float(row.rsplit(",", 1)[1]) <= 100
    # The same command in this process (torch is imported already: seconds instead of a start-up each).
    from typer.testing import CliRunner

    from iqabench.cli import app
    monkeypatch.chdir(work)
    for model in ("arniqa", "brisque"):  # every no-reference row has its regressor
        other = CliRunner().invoke(app, ["score", "--model", model, str(image)])
        assert other.exit_code == 0, other.output
        assert other.stdout.splitlines()[1].startswith(f"{image},{PATCH},{PATCH},")
    bad = work / "notes.txt"
    bad.write_text("not an image")
    fail = CliRunner().invoke(app, ["score", str(bad)])
    assert fail.exit_code == 1 and f"{bad}: not a readable image" in fail.stderr
