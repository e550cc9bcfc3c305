"""`iqabench check` given a folder where a file belongs: said so, with the file to give (it said "does not
exist", or "invalid object name")."""
from __future__ import annotations

from rich.console import Console
from test_gate import BASELINE, SEED_STD
from test_gate_cli import accepted
from test_gate_inputs import refused

from iqabench import gate


def test_metrics_given_as_a_folder_is_called_a_folder(tmp_path):
    repo = accepted(tmp_path, BASELINE, SEED_STD)
    console = Console(record=True, width=200)
    code = gate.run_check(None, metrics_path=repo / "reports", params_path=repo / "params.yaml", console=console)
    text = " ".join(console.export_text().split())
    assert code == 2 and "Traceback" not in text
    assert f"error: {repo / 'reports'} is a folder; give the metrics file in it, e.g. {repo / 'reports' / 'metrics.json'}" in text
    assert "does not exist" not in text


def test_baseline_given_as_a_folder_is_called_a_folder(tmp_path):
    repo = accepted(tmp_path, BASELINE, SEED_STD)
    text = refused(repo, str(repo / "reports"))
    assert (f"--baseline {repo / 'reports'} is a folder, not a file or a git revision; give the baseline file in it, "
            f"e.g. --baseline {repo / 'reports' / 'baseline.json'}") in text and "invalid object name" not in text
    assert "invalid object name 'nosuchrev'" in refused(repo, "nosuchrev")   # a revision that is no folder: git's word


def test_baseline_with_a_path_but_no_revision_names_the_form_to_use(tmp_path):
    # git reads ":/x" as a commit-message search, which printed a commit and then "is not valid JSON".
    repo = accepted(tmp_path, BASELINE, SEED_STD)
    for spec in (":/", ":reports/metrics.json"):
        text = refused(repo, spec)
        assert f"--baseline {spec} names no revision; give REV:PATH (e.g. HEAD~1:reports/baseline.json)" in text
        assert "not valid JSON" not in text
