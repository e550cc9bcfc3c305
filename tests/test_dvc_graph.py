"""The real dvc.yaml in a temporary copy: data outside DVC's view re-runs its readers, and stage commands run
from the venv's `dvc` alone (PATH without the venv), with a recovery hint when a stage fails."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakeserver import write_image
from repo_copy import copy_repo
from iqabench.datasets.local import register_generic

REPO = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).parent / "dvc"
pytestmark = pytest.mark.slow  # real `dvc repro` runs in a copy of the repository (about a minute)
BARE_PATH = "/usr/bin:/bin"  # no venv: the system python3 (if any) has no iqabench


def _run(args, cwd, check=True):
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": BARE_PATH, "LANG": "C.UTF-8"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("graph") / "repo"
    copy_repo(work)
    (work / "dvc.lock").unlink(missing_ok=True)
    # A generic dataset registered from a folder outside the repository.
    outside = work.parent / "mine"
    for i in range(4):
        write_image(outside / f"{i}.png", seed=i, size=(40, 40))
    (outside / "scores.csv").write_text("image,MOS\n0.png,1\n1.png,2\n2.png,3\n3.png,4\n")
    register_generic("mine", outside, outside / "scores.csv", "image", "MOS", 1, 5, True,
                     registry_path=work / "data" / "registry.json", check_pixels=False, progress=False)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["datasets"] = ["mine"]
    params["evaluate"].pop("regressor_dataset", None)  # the default: the first dataset listed
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, work)
    return work, outside


def test_stage_commands_run_from_the_venvs_dvc_without_the_venv_on_path(repo):
    work, _ = repo
    found = subprocess.run(["sh", "-c", "command -v python3 && python3 -c 'import iqabench'"],
                           env={"PATH": BARE_PATH}, capture_output=True)
    assert found.returncode != 0, "the system python3 has iqabench: this test would not test the shim"
    out = _run([DVC, "repro", "prepare@mine"], work)
    assert "Running stage 'prepare@mine'" in out.stdout
    assert len(pd.read_csv(work / "data/prepared/mine/manifest.csv")) == 4


def test_an_edited_score_file_reruns_prepare_and_nothing_else_does(repo):
    work, outside = repo
    if not (work / "data/prepared/mine/manifest.csv").is_file():  # run alone, not after the test above
        _run([DVC, "repro", "prepare@mine"], work)
    again = _run([DVC, "repro", "prepare@mine"], work)
    assert "Stage 'prepare@mine' didn't change, skipping" in again.stdout
    (outside / "scores.csv").write_text("image,MOS\n0.png,5\n1.png,2\n2.png,3\n3.png,4\n")
    edited = _run([DVC, "repro", "prepare@mine"], work)
    assert "Running stage 'prepare@mine'" in edited.stdout
    assert pd.read_csv(work / "data/prepared/mine/manifest.csv")["raw_score"].tolist()[0] == 5


def test_downloads_run_before_fingerprints_and_prepare(repo):
    work, _ = repo
    params = yaml.safe_load((work / "params.yaml").read_text())
    params.update(datasets=["mine", "kadid10k"], download=["kadid10k"])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        edges = {line.strip().rstrip(";") for target in ("prepare@kadid10k", "fit_niqe", "pretrain@contrique")
                 for line in _run([DVC, "dag", "--dot", target], work).stdout.splitlines() if "->" in line}
    finally:
        _run(["git", "checkout", "params.yaml"], work)
    assert {'"download@kadid10k" -> "fingerprint"', '"fingerprint" -> "prepare@kadid10k"',
            '"fingerprint" -> "fit_niqe"', '"fingerprint" -> "pretrain@contrique"'} <= edges


def test_a_third_encoder_in_pretrain_is_one_more_stage_that_extract_depends_on(repo):
    """One entry under params.yaml `pretrain:` is a stage pretrain@NAME with its own params, fingerprint and
    outputs, upstream of extract, finetune and report; dropping an entry (and its row) drops its stage."""
    work, _ = repo
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["pretrain"]["third"] = {**params["pretrain"]["contrique"], "steps": 5}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        listed = _run([DVC, "stage", "list", "--name-only"], work).stdout.split()
        edges = {line.strip().rstrip(";") for line in _run([DVC, "dag", "--dot"], work).stdout.splitlines()
                 if "->" in line}
        status = _run([DVC, "status", "pretrain@third"], work, check=False)
        show = _run([DVC, "stage", "list", "pretrain@third"], work).stdout
        del params["pretrain"]["arniqa"]
        params["models"].remove("arniqa")
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        without = _run([DVC, "stage", "list", "--name-only"], work).stdout.split()
    finally:
        _run(["git", "checkout", "params.yaml"], work)
    assert {"pretrain@contrique", "pretrain@arniqa", "pretrain@third"} <= set(listed)
    assert "data/encoders/third.pt" in show and "data/encoders/third_history.csv" in show
    assert {'"fingerprint" -> "pretrain@third"', '"synthesize" -> "pretrain@third"',
            '"pretrain@third" -> "extract@mine"', '"pretrain@third" -> "finetune"',
            '"pretrain@third" -> "report"'} <= edges
    assert "pretrain@third" in status.stdout  # never run: DVC knows it as a stage of its own
    assert "pretrain@arniqa" not in without and {"pretrain@contrique", "pretrain@third"} <= set(without)


def test_a_failing_stage_says_how_to_get_the_last_good_results_back(repo):
    work, outside = repo
    (outside / "scores.csv").write_text("image,MOS\n0.png,NaN\n1.png,2\n2.png,3\n3.png,4\n")
    failed = _run([DVC, "repro", "prepare@mine"], work, check=False)
    assert failed.returncode != 0
    err = " ".join(failed.stderr.split())
    assert "prepare mine: mine:" in err and "line 2: 'MOS' is 'NaN', not a number" in err
    assert "git checkout reports && dvc checkout" in err and "Traceback" not in err
    assert not (work / "data/prepared/mine").exists()  # no half-written manifest
