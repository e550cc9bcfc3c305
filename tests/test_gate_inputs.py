"""Hostile input to `iqabench check`: a baseline or metrics file that would switch the gate off, or crash it.

Each bad input must give one error line that names the file and the key and says what to do, a non-zero exit
code, and leave reports/baseline.json byte-for-byte as it was.
"""
from __future__ import annotations

import copy
import errno
import json
import tempfile

import pytest
from test_gate import BASELINE, SEED_STD, TOLERANCES, changed
from test_gate_cli import accepted, git, run

from iqabench import acceptance, gate
from iqabench.io import write_json, write_text


@pytest.fixture
def repo(tmp_path):
    """A checkout with an accepted reports/baseline.json (BASELINE) and the same metrics as the current run."""
    return accepted(tmp_path, BASELINE, SEED_STD)


def baseline_file(repo):
    return repo / "reports" / "baseline.json"


def edit_baseline(repo, edit) -> bytes:
    """Apply ``edit`` to the accepted baseline's metrics in place; returns the file's new bytes."""
    payload = json.loads(baseline_file(repo).read_text())
    edit(payload["metrics"])
    write_json(baseline_file(repo), payload)
    return baseline_file(repo).read_bytes()


def set_value(section, model, dataset, statistic, value):
    def edit(metrics):
        metrics[section][model][dataset][statistic] = value
    return edit


def refused(repo, *args, **kwargs) -> str:
    """Run the gate; it must exit 2 with one error line and no write to the baseline file."""
    before = baseline_file(repo).read_bytes() if baseline_file(repo).exists() else None
    code, text = run(repo, *args, **kwargs)
    assert code == 2, text
    assert text.count("error:") == 1 and "Traceback" not in text, text
    assert (baseline_file(repo).read_bytes() if baseline_file(repo).exists() else None) == before
    return " ".join(text.split())  # rich wraps long lines; compare the words


# ----------------------------------------------------------------------------- a baseline that cannot gate

@pytest.mark.parametrize("value, problem", [
    (float("nan"), "is NaN: the correlation is undefined"),
    (7.0, "is 7.0, outside [-1, 1], so it is not a correlation"),
    (-1.5, "is -1.5, outside [-1, 1]"),
    (float("inf"), "is inf, outside [-1, 1]"),
    (None, "is null, not a number"),
    (10 ** 400, "is 1000"),  # a JSON integer too large for a float: an OverflowError (rich folds the digits)
])
def test_a_baseline_value_that_is_not_a_correlation_is_refused(repo, value, problem):
    # NaN showed as "improved" and 7.0 as REGRESSED: the gate compared what is not a correlation.
    edit_baseline(repo, set_value("within", "contrique", "synthetic-single", "srcc", value))
    text = refused(repo)
    assert f"reports/baseline.json: within.contrique.synthetic-single.srcc {problem}" in text
    assert "`git checkout reports/baseline.json`" in text and "iqabench check --accept --reason" in text


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m.update(within={}), "reports/baseline.json: 'within' is empty, but"),
    (lambda m: m.pop("within"), "reports/baseline.json: 'within' is empty, but"),
    (lambda m: m.update(cross={}), "reports/baseline.json: 'cross' is empty, but"),
    (lambda m: m["within"].update(contrique={}), "reports/baseline.json: within.contrique is empty, but"),
    (lambda m: m["within"]["random"]["synthetic-single"].pop("srcc"),
     "reports/baseline.json: within.random.synthetic-single has no srcc, but"),
    (lambda m: m.clear(), "reports/baseline.json holds no SRCC/PLCC under 'within' or 'cross', so it gates nothing"),
])
def test_a_baseline_that_gates_nothing_where_the_current_run_has_results_fails(repo, edit, problem):
    # "within": {} listed every result as added and passed: the gate was silently off.
    edit_baseline(repo, edit)
    text = refused(repo)
    assert problem in text and ("so the gate would compare nothing there" in text or "gates nothing" in text)
    assert "`git checkout reports/baseline.json`" in text


def test_a_new_row_or_dataset_is_added_and_passes(repo):
    # A row the baseline never had is new work, not a hole in the baseline: listed, counted, not failed.
    edit_baseline(repo, lambda m: m["within"].pop("random"))
    current = copy.deepcopy(BASELINE)
    current["within"]["contrique"]["koniq10k"] = {"srcc": 0.6, "plcc": 0.6}
    write_json(repo / "reports" / "metrics.json", current)
    code, text = run(repo)
    assert code == 0, text
    assert "within.random.synthetic-single.srcc" in text and "within.contrique.koniq10k.srcc" in text
    assert "4 new metric(s) not in the baseline (`--accept` to gate them)" in " ".join(text.split())


def test_a_second_dataset_brings_its_cross_pairs_as_new_results(tmp_path):
    # With one dataset the pipeline writes "cross": {}; a second dataset's pairs are then new, not a hole.
    one = {"within": {"contrique": {"synthetic-single": {"srcc": 0.9, "plcc": 0.9}}}, "cross": {}}
    repo = accepted(tmp_path, one, {})
    two = copy.deepcopy(one)
    two["within"]["contrique"]["synthetic-mixed"] = {"srcc": 0.8, "plcc": 0.8}
    two["cross"] = {"contrique": {"synthetic-single->synthetic-mixed": {"srcc": 0.7, "plcc": 0.7}}}
    write_json(repo / "reports" / "metrics.json", two)
    code, text = run(repo)
    assert code == 0 and "cross.contrique.synthetic-single->synthetic-mixed.srcc" in text, text


def test_a_metric_the_baseline_gates_and_the_current_run_lacks_fails(repo):
    current = copy.deepcopy(BASELINE)
    del current["within"]["random"]
    write_json(repo / "reports" / "metrics.json", current)
    code, text = run(repo)
    text = " ".join(text.split())
    assert code == 1 and "within.random.synthetic-single.srcc (MISSING)" in text
    assert "rerun `dvc repro` if it should be there" in text and "iqabench check --accept" in text


def test_a_dvc_diff_lists_only_what_changed_so_absent_sections_are_not_a_hole():
    old = {"within": {"contrique": {"synthetic-single": {"srcc": 0.9}}}}
    new = {"within": {"contrique": {"synthetic-single": {"srcc": 0.89}}},
           "cross": {"contrique": {"synthetic-single->synthetic-mixed": {"srcc": 0.7}}}}
    result = gate.check(new, old, TOLERANCES, partial=True)
    assert not result.failed and {row.status for row in result.rows} == {gate.OK, gate.ADDED}
    with pytest.raises(gate.BaselineError, match="'cross' is empty"):
        gate.check(new, {"within": {"contrique": {"a": {"srcc": 0.9}, "b": {"srcc": 0.9}}}},
                   TOLERANCES, partial=False)


# ----------------------------------------------------------------------------- --accept

def test_accept_replaces_a_baseline_that_cannot_gate(repo):
    # The fix the error names must work: a NaN baseline is re-baselined, its history kept.
    edit_baseline(repo, set_value("within", "contrique", "synthetic-single", "srcc", float("nan")))
    code, text = run(repo, accept_reason="the baseline was hand-edited; re-baselined from this run")
    assert code == 0 and "could not gate" in text and "accepted" in text, text
    payload = acceptance.read(baseline_file(repo))
    assert payload["metrics"] == BASELINE and len(payload["accepted"]) == 2
    assert run(repo)[0] == 0


def test_accept_refuses_current_metrics_that_are_not_correlations(repo):
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": float("nan")}))
    text = refused(repo, accept_reason="take it")
    assert "reports/metrics.json: within.contrique.synthetic-single.srcc is NaN" in text
    assert "regenerate it with `dvc repro`" in text


def test_accept_into_a_read_only_reports_folder_says_so_and_writes_nothing(repo, monkeypatch):
    # mkstemp is where a read-only folder (or an immutable file's folder) first refuses; it was a traceback.
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.80}))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    text = refused(repo, accept_reason="intended")
    assert f"cannot write {baseline_file(repo)} (Permission denied): make {repo / 'reports'}/ writable" in text
    assert sorted(p.name for p in (repo / "reports").iterdir()) == ["baseline.json", "metrics.json", "variance.csv"]


def test_accept_into_a_really_read_only_folder(repo):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.80}))
    (repo / "reports").chmod(0o555)
    try:
        text = refused(repo, accept_reason="intended")
    finally:
        (repo / "reports").chmod(0o755)
    assert "cannot write" in text and "writable" in text


# ----------------------------------------------------------------------------- current metrics of the wrong shape

@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "reports/metrics.json holds a list, expected a JSON object"),
    ('{"within": {"contrique": {"synthetic-single": {"srcc": "0.9"}}}, "cross": {}}',
     "reports/metrics.json: within.contrique.synthetic-single.srcc is '0.9', not a number; regenerate it with "
     "`dvc repro`"),
    ('{"within": {"contrique": "good"}, "cross": {}}', "reports/metrics.json: within.contrique holds 'good'"),
    ('{"cross": {}}', "reports/metrics.json has no 'within' section (it has ['cross'])"),
    ('{"within": {"contrique": {"synthetic-single": {"srcc": 7}}}, "cross": {}}',
     "reports/metrics.json: within.contrique.synthetic-single.srcc is 7, outside [-1, 1]"),
    (b"\xff\xfe{}", "cannot read"),
])
def test_current_metrics_of_the_wrong_shape_get_one_line(repo, content, message):
    path = repo / "reports" / "metrics.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert message in refused(repo)


# ----------------------------------------------------------------------------- git revisions and broken files

def test_a_revision_without_the_file_gets_one_line(repo):
    git(repo, "checkout", "-q", "--orphan", "empty")
    git(repo, "rm", "-q", "-r", "--cached", ".")
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing committed")
    empty = git_out(repo, "rev-parse", "HEAD")
    text = refused(repo, empty)
    assert f"cannot read the baseline {empty}:reports/metrics.json from git (path 'reports/metrics.json' exists " \
           f"on disk, but not in '{empty}')" in text and "pass --baseline with a revision where" in text
    text = refused(repo, f"{empty}:reports/baseline.json")
    assert f"cannot read the baseline {empty}:reports/baseline.json from git" in text
    assert "--accept" not in text  # it used to say the file "does not exist; accept ..." and would write it


def test_the_accepted_baseline_as_of_a_revision(repo):
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.80}))
    code, text = run(repo, "HEAD:reports/baseline.json")
    text = " ".join(text.split())
    assert code == 1 and "git HEAD:reports/baseline.json" in text and "REGRESSED" in text
    edit_baseline(repo, set_value("within", "contrique", "synthetic-single", "srcc", float("nan")))
    git(repo, "commit", "-q", "-am", "a bad baseline")
    text = refused(repo, "HEAD:reports/baseline.json")
    assert "HEAD:reports/baseline.json: within.contrique.synthetic-single.srcc is NaN" in text
    assert "pass --baseline with another revision or file" in text


@pytest.mark.parametrize("content, message", [
    ('{"metrics": {"within": {}}, "accepted": ["x"]}', "accepted record 1 is 'x', not a record with a 'reason'"),
    ('{"metrics": {}, "accepted": [{"reason": "r"}]}', "accepted record 1 is {'reason': 'r'}"),
    ('{"metrics": {', "is not valid JSON"),
])
def test_a_broken_baseline_file_names_the_restore(repo, content, message):
    write_text(baseline_file(repo), content)
    text = refused(repo)
    assert message in text and "restore it with `git checkout reports/baseline.json`" in text
    assert message in refused(repo, accept_reason="cannot keep a history it cannot read")


def git_out(repo, *args) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
