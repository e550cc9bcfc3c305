"""Provenance that is true: the dvc_lock digest names a dvc.lock that exists, run names tell runs apart."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from iqabench import provenance, timing

REPO = Path(__file__).resolve().parents[1]

DVC_YAML = {"stages": {"prepare": {"cmd": "p", "deps": ["src"], "outs": ["data/prepared/a"]},
                       "evaluate": {"cmd": "e", "deps": ["data/prepared"], "outs": ["reports/within.csv"]},
                       "elsewhere": {"cmd": "x", "deps": ["src"], "outs": ["data/other"]},
                       "report": {"cmd": "r", "deps": ["reports/within.csv", {"data/prepared": {}}],
                                  "outs": ["reports/results.md"]}}}


def _entry(cmd: str, deps: list[str], outs: list[str], md5: str = "0" * 32) -> dict:
    return {"cmd": cmd, "deps": [{"path": d, "md5": md5} for d in deps], "outs": [{"path": o, "md5": md5} for o in outs]}


def _write_lock(root: Path, stages: dict) -> Path:
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return root / "dvc.lock"


def test_digest_covers_exactly_the_stages_upstream_of_report(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    upstream = {"prepare": _entry("p", ["src"], ["data/prepared/a"]),
                "evaluate": _entry("e", ["data/prepared"], ["reports/within.csv"])}
    # During `dvc repro` the report stage runs before DVC writes its own entry: the digest then ...
    during = provenance.lock_digest("report", _write_lock(tmp_path, upstream), tmp_path / "dvc.yaml")
    # ... equals the one of the final file, which has report's entry and a stage report does not read.
    final = {**upstream, "report": _entry("r", ["reports/within.csv"], ["reports/results.md"]),
             "elsewhere": _entry("x", ["src"], ["data/other"])}
    assert provenance.lock_digest("report", _write_lock(tmp_path, final), tmp_path / "dvc.yaml") == during
    assert provenance.upstream_stages(final, ["reports/within.csv", "data/prepared"]) == ["evaluate", "prepare"]
    # Any change upstream (here a different prepared output) changes it.
    changed = {**final, "prepare": _entry("p", ["src"], ["data/prepared/a"], md5="1" * 32)}
    assert provenance.lock_digest("report", _write_lock(tmp_path, changed), tmp_path / "dvc.yaml") != during
    # A stage re-run for a code change that wrote the same bytes: DVC does not re-run report, and the digest
    # (of the outputs the results come from) still names the committed report truly.
    recoded = {**final, "prepare": {**_entry("p2", ["src"], ["data/prepared/a"]),
                                    "deps": [{"path": "src", "md5": "2" * 32}]}}
    assert provenance.lock_digest("report", _write_lock(tmp_path, recoded), tmp_path / "dvc.yaml") == during


def test_the_committed_dvc_lock_holds_only_stages_of_dvc_yaml():
    """DVC keeps the lock entry of a renamed or removed stage; a stale one would describe a pipeline that is gone."""
    import sys

    dvc = Path(sys.executable).parent / "dvc"
    listed = subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    assert listed.returncode == 0, listed.stderr
    stale = set((yaml.safe_load((REPO / "dvc.lock").read_text()) or {}).get("stages", {})) - set(listed.stdout.split())
    assert not stale, f"dvc.lock has stages dvc.yaml lacks: {sorted(stale)}; delete their entries"


def test_the_committed_report_names_the_committed_dvc_lock():
    """reports/results.md (and the MLflow tag, the same value) is checked against the dvc.lock beside it."""
    results = (REPO / "reports" / "results.md").read_text()
    found = re.search(r"dvc\.lock `([0-9a-f]{16})`", results)
    assert found, "reports/results.md names no dvc.lock digest: regenerate it with `dvc repro`"
    assert found.group(1) == provenance.lock_digest("report", REPO / "dvc.lock", REPO / "dvc.yaml"), (
        "reports/results.md and dvc.lock come from different pipeline runs: commit both from one `dvc repro`")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_params_diff_dirty_flag_and_run_name(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "evaluate": {"n_splits": 10}}))
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.md").write_text("old\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    sha, dirty = provenance.git_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", sha) and not dirty
    # What `dvc exp run -S evaluate.n_splits=5` does to params.yaml, and a regenerated report: not dirty code.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "evaluate": {"n_splits": 5}}))
    (tmp_path / "reports" / "results.md").write_text("new\n")
    assert provenance.git_state(tmp_path) == (sha, False)
    diff = provenance.params_diff({"seed": 0, "evaluate": {"n_splits": 5}}, cwd=tmp_path)
    assert diff == {"evaluate.n_splits": (10, 5)}
    # The file as report finds it without --params (params.repo_root(): absolute), from any folder of the checkout.
    (tmp_path / "sub").mkdir()
    assert provenance.params_diff({"seed": 0, "evaluate": {"n_splits": 5}}, path=tmp_path / "params.yaml",
                                  cwd=tmp_path / "sub") == diff
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path) == (sha, True)
    # The tag's value and the run name's mark differ on purpose (provenance.commit_tag).
    assert provenance.commit_tag(sha, True) == f"{sha}-dirty" == provenance.git_commit(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "waxy-vats")
    name = provenance.run_name(sha, True, provenance.experiment_name(), diff)
    assert name == f"{sha[:8]}+dirty waxy-vats evaluate.n_splits=5"
    # The results digest: runs of two commits that reproduced the same outputs show the same one.
    assert provenance.run_name(sha, False, "", diff, "2ddbedf17c6dade0") == \
        f"{sha[:8]} evaluate.n_splits=5 results 2ddbedf1"
    assert provenance.run_name(sha, False, "", {}, " ") == f"{sha[:8]} HEAD params"  # no digest: no "results"
    assert provenance.run_name(sha, False, "", {}) == f"{sha[:8]} HEAD params"
    # A list shows what it gained or lost, not its whole new value (README's switch to real datasets).
    lists = {"datasets": (["synthetic-single", "synthetic-mixed"], ["synthetic-single", "koniq10k-subset"]),
             "models": (["a", "b"], ["b", "a"]), "pretrain.contrique.steps": (600, None)}
    assert provenance.format_diff(lists) == ("datasets+=koniq10k-subset datasets-=synthetic-mixed "
                                             'models=["b", "a"] pretrain.contrique.steps=(removed)')


def test_only_stages_that_ran_since_the_last_report_are_timed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    timings = tmp_path / "reports" / "timings"
    timings.mkdir(parents=True)
    now = 1_800_000_000.0
    for name, seconds, age in (("prepare", 40.0, 3600), ("pretrain", 300.0, 3600), ("evaluate", 3.0, 60)):
        path = timings / f"{name}.json"
        path.write_text(f'{{"stage": "{name}", "seconds": {seconds}, "machine": "test"}}')
        os.utime(path, (now - age, now - age))
    previous = tmp_path / "reports" / "results.md"
    previous.write_text("the report of the run before")
    os.utime(previous, (now - 1800, now - 1800))  # written after prepare and pretrain last ran
    every, ran = timing.stage_timings(previous)
    assert [t["stage"] for t in every] == ["evaluate", "prepare", "pretrain"]
    assert [t["stage"] for t in ran] == ["evaluate"]
    table = timing.timings_markdown(every, ran)
    assert "| evaluate | 3.0 | yes |" in table and "| pretrain | 300.0 |  |" in table
    assert "**this run (compute, excluding DVC overhead)** | **3.0**" in table
    resumed = {"stage": "pretrain", "seconds": 0.2, "training_seconds": 290.0, "machine": "test", "finished": now}
    assert "| pretrain | 0.2 (training 290.0 s, resumed) | yes |" in timing.timings_markdown([resumed], [resumed])
    # No previous report (a first run): everything ran.
    previous.unlink()
    assert len(timing.stage_timings(previous)[1]) == 3
    # Under DVC the report's outputs are deleted before it runs: the `dvc` process's start decides.
    assert [t["stage"] for t in timing.stage_timings(previous, started=now - 600)[1]] == ["evaluate"]


def test_the_pipeline_run_starts_when_the_dvc_process_started(tmp_path):
    """A stage is a child (through DVC's shell and stages/run.sh) of the `dvc` process."""
    import sys

    fake_dvc = tmp_path / "dvc"
    fake_dvc.write_text(
        f"#!{sys.executable}\n"
        "import psutil, subprocess, sys\n"
        "print(psutil.Process().create_time())\n"
        "code = 'from iqabench import timing; print(timing.repro_started())'\n"
        "subprocess.run(['sh', '-c', '\"$0\" -c \"$1\"', sys.executable, code], check=True)\n")
    fake_dvc.chmod(0o755)
    own, seen = subprocess.run([str(fake_dvc)], capture_output=True, text=True, check=True,
                               cwd=REPO).stdout.split()
    assert float(seen) == pytest.approx(float(own), abs=0.05)
    assert timing.repro_started() is None  # pytest is not run by dvc


@pytest.mark.parametrize("uri, root", [("sqlite:///mlflow.db", "mlartifacts"),
                                       ("sqlite:////srv/store/mlflow.db", "/srv/store/mlartifacts"),
                                       ("postgresql://h/db", "mlartifacts")])
def test_local_artifact_root_sits_beside_the_store(uri, root):
    from iqabench import tracking

    assert tracking.local_artifact_root(uri) == Path(root)


def test_a_dataset_dropped_from_params_leaves_the_wall_time_table(tmp_path, monkeypatch):
    # reports/timings/extract-koniq10k.json stays in git after koniq10k leaves `datasets:`; it was summed into
    # "all stages, as last run" though no stage of the pipeline writes it any more.
    monkeypatch.chdir(tmp_path)
    timings = tmp_path / "reports" / "timings"
    timings.mkdir(parents=True)
    for name in ("prepare-synthetic-single", "extract-synthetic-single", "extract-koniq10k", "pretrain-contrique",
                 "evaluate"):
        (timings / f"{name}.json").write_text(f'{{"stage": "{name}", "seconds": 1.0}}')
    every, _ = timing.stage_timings(started=0.0, datasets=["synthetic-single"])
    assert [t["stage"] for t in every] == ["evaluate", "extract-synthetic-single", "prepare-synthetic-single",
                                           "pretrain-contrique"]
