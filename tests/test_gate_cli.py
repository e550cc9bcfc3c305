"""`iqabench check` end to end: baselines from git revisions and files, the accepted baseline and --accept, the
seed spread read from reports/variance.csv, and params.yaml's check: section. gate.check itself: test_gate.py."""
from __future__ import annotations

import copy
import shutil
import subprocess

import pandas as pd
import pytest
from rich.console import Console
from test_gate import BASELINE, SEED_STD, changed

from iqabench import acceptance, gate, gate_inputs
from iqabench.io import write_csv, write_json, write_text

def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=gate", "-c", "user.email=gate@example.invalid", *args], cwd=repo,
                   check=True, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    write_text(tmp_path / "params.yaml", "evaluate: {test_frac: 0.2}\ncheck:\n  baseline: HEAD\n"
                                         "  tolerance: {default: 0.02}\n")
    write_json(tmp_path / "reports" / "metrics.json", BASELINE)
    git(tmp_path, "add", "params.yaml", "reports/metrics.json")
    git(tmp_path, "commit", "-q", "-m", "baseline")
    return tmp_path


def run(repo, baseline=None, **kwargs) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = gate.run_check(baseline, metrics_path=repo / "reports" / "metrics.json",
                          params_path=repo / "params.yaml", console=console, **kwargs)
    return code, console.export_text()


def test_baseline_from_a_git_revision(repo):
    assert gate_inputs.baseline_from_git("HEAD", "reports/metrics.json", repo) == BASELINE
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.80}))
    code, text = run(repo)
    assert code == 1
    assert "within.contrique.synthetic-single.srcc" in text and "REGRESSED" in text and "git HEAD" in text
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.95}))
    assert run(repo)[0] == 0


def test_run_check_with_a_baseline_file_and_bad_inputs(repo, tmp_path_factory):
    other = tmp_path_factory.mktemp("baseline") / "old.json"
    write_json(other, changed(**{"within/contrique/synthetic-single/srcc": 0.99}))
    code, text = run(repo, str(other))
    assert code == 1 and "FAILED" in text
    code, text = run(repo, "no-such-rev")
    assert code == 2 and "no-such-rev" in text
    write_text(repo / "reports" / "metrics.json", "{not json")
    code, text = run(repo)
    assert code == 2 and "not valid JSON" in text
    # A hand-edited baseline must not pass by comparing nothing (a string read as "undefined", a traceback).
    write_json(repo / "reports" / "metrics.json", BASELINE)
    write_json(other, {"within": {"contrique": {"synthetic-single": {"srcc": "high"}}}})
    code, text = run(repo, str(other))
    assert code == 2 and f"{other}: within.contrique.synthetic-single.srcc is 'high', not a number" in text
    write_json(other, {"within": {"contrique": 5}})
    code, text = run(repo, str(other))
    assert code == 2 and f"{other}: within.contrique holds 5, expected a mapping" in text


def test_check_command_exit_code_through_typer(repo, monkeypatch):
    typer_testing = pytest.importorskip("typer.testing")
    import typer

    app = typer.Typer()
    app.command("check")(gate.check_command)
    monkeypatch.chdir(repo)
    write_json(repo / "reports" / "metrics.json", changed(**{"within/random/synthetic-single/srcc": None}))
    outcome = typer_testing.CliRunner().invoke(app, ["--baseline", "HEAD"])
    assert outcome.exit_code == 1, outcome.output
    assert "MISSING" in outcome.output



# ----------------------------------------------------------------------------- seed spread and the accepted baseline

def variance_frame(std: dict) -> pd.DataFrame:
    return pd.DataFrame({"metric": list(std), "mean": 0.5, "std": list(std.values()), "n_seeds": 5})


@pytest.fixture
def accepted_repo(tmp_path):
    return accepted(tmp_path, BASELINE, SEED_STD)


def accepted(tmp_path, metrics: dict, seed_std: dict):
    """A checkout whose gate compares with reports/baseline.json, accepted once and committed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    write_text(tmp_path / "params.yaml", "evaluate: {test_frac: 0.2}\ncheck:\n  baseline: reports/baseline.json\n"
                                         "  tolerance: {default: 0.02}\n  seed_factor: 3\n")
    write_json(tmp_path / "reports" / "metrics.json", metrics)
    write_csv(tmp_path / "reports" / "variance.csv", variance_frame(seed_std))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "pipeline")
    assert run(tmp_path, accept_reason="initial baseline")[0] == 0
    git(tmp_path, "add", "reports/baseline.json")
    git(tmp_path, "commit", "-q", "-m", "accept the baseline")
    return tmp_path


def commit_metrics(repo, metrics: dict, message: str) -> None:
    write_json(repo / "reports" / "metrics.json", metrics)
    git(repo, "add", "reports/metrics.json")
    git(repo, "commit", "-q", "-m", message)


def test_a_regression_committed_with_its_regenerated_metrics_still_fails(accepted_repo):
    commit_metrics(accepted_repo, changed(**{"within/contrique/synthetic-single/srcc": 0.80}), "regress")
    code, text = run(accepted_repo)
    assert code == 1 and "within.contrique.synthetic-single.srcc" in text and "REGRESSED" in text
    assert "reports/baseline.json" in text and "--accept" in text
    # The old gate compared with the metrics committed at HEAD: the regression itself, so it passed.
    assert run(accepted_repo, "HEAD")[0] == 0


def test_a_rerun_with_another_seed_inside_the_measured_spread_passes(accepted_repo):
    # Another seed moves each SRCC by up to 2.5 std of the measured spread, beyond the 0.02 sampling tolerance.
    other_seed = changed(**{"within/contrique/synthetic-single/srcc": 0.90 - 0.05,
                            "within/contrique/synthetic-mixed/srcc": 0.80 + 0.04,
                            "within/random/synthetic-single/srcc": 0.50 - 0.015,  # no training: sampling rule
                            "cross/contrique/synthetic-single->synthetic-mixed/srcc": 0.70 - 0.07})
    commit_metrics(accepted_repo, other_seed, "another seed")
    code, text = run(accepted_repo)
    assert code == 0 and "passed" in text and "(seed)" in text and "warning" not in text
    # PLCC is shown but not gated: its rows say so rather than a bare "ok" that reads as checked.
    lines = text.splitlines()
    assert any("plcc" in line and "ok (ungated)" in line for line in lines)
    assert not any("srcc" in line and "ungated" in line for line in lines)
    (accepted_repo / "reports" / "variance.csv").unlink()
    code, text = run(accepted_repo)
    assert code == 1 and "variance.csv not found" in text and "sampling error only" in text


def test_a_row_without_training_is_not_given_the_split_noise_a_same_seed_rerun_does_not_have(tmp_path):
    # BRISQUE's spread over seeds is the split draw's alone; the gate's re-run draws the same splits and computes
    # the same features, so a 0.1 drop is a regression even though 3 x its seed std would allow 0.3.
    metrics = copy.deepcopy(BASELINE)
    metrics["within"]["brisque"] = {"synthetic-single": {"srcc": 0.60, "plcc": 0.61}}
    repo = accepted(tmp_path, metrics, {**SEED_STD, "within.brisque.synthetic-single.srcc": 0.10})
    metrics["within"]["brisque"]["synthetic-single"]["srcc"] = 0.50
    metrics["within"]["contrique"]["synthetic-single"]["srcc"] = 0.85  # pretrained: within 3 x 0.02
    commit_metrics(repo, metrics, "brisque regressed")
    code, text = run(repo)
    assert code == 1 and "within.brisque.synthetic-single.srcc" in text and "REGRESSED" in text
    verdicts = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] and "." in line.split()[1]}
    assert "REGRESSED" in verdicts["within.brisque.synthetic-single.srcc"]
    assert "REGRESSED" not in verdicts["within.contrique.synthetic-single.srcc"]


def test_accept_records_reason_commit_date_and_what_moved(accepted_repo):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=accepted_repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    regressed = changed(**{"within/contrique/synthetic-single/srcc": 0.80, "within/random/synthetic-single/srcc": 0.51})
    write_json(accepted_repo / "reports" / "metrics.json", regressed)
    baseline_file = accepted_repo / "reports" / "baseline.json"
    before = baseline_file.read_text()
    for bad in ("", "   "):
        code, text = run(accepted_repo, accept_reason=bad)
        assert code == 2 and "non-empty --reason" in text
    assert run(accepted_repo, "HEAD", accept_reason="why")[0] == 2  # a git revision is not a file to accept into
    assert baseline_file.read_text() == before
    code, text = run(accepted_repo, accept_reason="smaller pretraining budget, see #12")
    assert code == 0 and "accepted" in text
    payload = acceptance.read(baseline_file)
    assert payload["metrics"] == regressed
    assert [r["reason"] for r in payload["accepted"]] == ["initial baseline", "smaller pretraining budget, see #12"]
    latest = payload["accepted"][-1]
    assert latest["commit"] == head and latest["date"].endswith("Z")
    # Only what moved beyond its tolerance: the drop of 0.10, not random's +0.01.
    assert latest["moved"] == [{"metric": "within.contrique.synthetic-single.srcc", "old": 0.90, "new": 0.80,
                                "status": gate.REGRESSED}]
    assert run(accepted_repo)[0] == 0


def test_check_says_when_a_dataset_changed_under_the_accepted_baseline(accepted_repo):
    manifest = accepted_repo / "data" / "prepared" / "synthetic-single" / "manifest.csv"
    frame = pd.DataFrame({"dataset": "synthetic-single", "image": ["/here/a.png", "/here/b.png"],
                          "score": ["0.25", "0.75"], "content_id": ["a", "b"]})
    write_csv(manifest, frame)
    assert run(accepted_repo, accept_reason="with the data recorded")[0] == 0
    recorded = acceptance.read(accepted_repo / "reports" / "baseline.json")["accepted"][-1]["data"]
    assert list(recorded) == ["synthetic-single"]  # synthetic-mixed has no manifest here: left out
    write_csv(manifest, frame.assign(image=["/elsewhere/a.png", "/elsewhere/b.png"]))  # the same data, moved
    code, text = run(accepted_repo)
    assert code == 0 and "differ from those the baseline was accepted on" not in text
    write_csv(manifest, frame.assign(score=["0.25", "0.70"]))
    code, text = run(accepted_repo)
    assert code == 0 and "synthetic-single's images, scores or contents differ" in " ".join(text.split())


def test_a_missing_or_foreign_baseline_file_is_a_clear_error(accepted_repo):
    (accepted_repo / "reports" / "baseline.json").unlink()
    code, text = run(accepted_repo)
    assert code == 2 and "does not exist" in text and "--accept" in text
    write_json(accepted_repo / "reports" / "baseline.json", {"metrics": BASELINE})  # no 'accepted' list
    assert run(accepted_repo, accept_reason="x")[0] == 2


def test_accept_through_the_command_line(accepted_repo, monkeypatch):
    typer_testing = pytest.importorskip("typer.testing")
    import typer

    app = typer.Typer()
    app.command("check")(gate.check_command)
    monkeypatch.chdir(accepted_repo)
    runner = typer_testing.CliRunner()
    write_json(accepted_repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.8}))
    assert runner.invoke(app, []).exit_code == 1
    assert runner.invoke(app, ["--accept"]).exit_code == 2
    assert runner.invoke(app, ["--reason", "no accept flag"]).exit_code == 2
    outcome = runner.invoke(app, ["--accept", "--reason", "intended"])
    assert outcome.exit_code == 0, outcome.output
    assert runner.invoke(app, []).exit_code == 0


def test_a_bad_check_section_is_refused_naming_the_file_key_and_value(repo):
    # The wording is params validation's (params.check_gate_section): one schema for the check: section.
    where = repo / "params.yaml"
    for body, message in (("seed_factr: 3", "check.seed_factr is not a known key (did you mean 'seed_factor'?)"),
                          ("seed_factor: -1", "check.seed_factor = -1 is not allowed; it must be a number in [0, 10]"),
                          ("gate: [srcc, krcc]", "check.gate = ['srcc', 'krcc'] is not allowed")):
        write_text(where, f"check:\n  tolerance: {{default: 0.02}}\n  {body}\n")
        code, text = run(repo, "HEAD")
        assert code == 2 and f"error: {where}: {message}" in " ".join(text.split()), text
