"""`iqabench check` given a folder where a file belongs (it said "does not exist", or "invalid object name"), a
seed spread or test-set size that is no number, a baseline that is the metrics file or no baseline file, a check:
section that gates nothing, and JSON that repeats a key, starts with a BOM or nests 100000 deep."""
from __future__ import annotations

import pytest
from rich.console import Console
from test_gate import BASELINE, SEED_STD, changed
from test_gate_cli import accepted, run
from test_gate_inputs import baseline_file, refused

from iqabench import acceptance, gate
from iqabench.io import write_json, write_text


@pytest.fixture
def repo(tmp_path):
    """A checkout with an accepted reports/baseline.json (BASELINE) and the same metrics as the current run."""
    return accepted(tmp_path, BASELINE, SEED_STD)


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


# ----------------------------------------------------------------------------- reports/variance.csv

def write_variance(repo, rows: str) -> None:
    """reports/variance.csv with SEED_STD's rows and then ``rows`` (lines 'metric,std,n_seeds')."""
    body = "".join(f"{metric},{std},5\n" for metric, std in SEED_STD.items())
    write_text(repo / "reports" / "variance.csv", "metric,std,n_seeds\n" + body + rows)


@pytest.mark.parametrize("rows, problem", [
    ("within.contrique.synthetic-single.plcc,inf,5\n", "line 6: the metric 'within.contrique.synthetic-single.plcc' "
                                                      "has std inf, above 1, which lets any drop pass"),
    ("within.contrique.synthetic-single.plcc,1.5,5\n", "line 6: the metric 'within.contrique.synthetic-single.plcc' "
                                                      "has std 1.5, above 1"),
    ("within.contrique.synthetic-single.plcc,-0.02,5\n", "line 6: the metric 'within.contrique.synthetic-single.plcc' "
                                                        "has std -0.02, below 0"),
    ("within.contrique.synthetic-single.plcc,nan,5\n", "line 6: the metric 'within.contrique.synthetic-single.plcc' "
                                                      "has a blank std over 5 seeds"),
    ("within.contrique.synthetic-single.srcc,5.0,5\n", "line 6: the metric 'within.contrique.synthetic-single.srcc' "
                                                      "is listed twice (line 2, std 0.02, and line 6, std 5)"),
])
def test_a_seed_std_that_would_let_any_drop_pass_is_refused(repo, rows, problem):
    # inf (or 5.0 read last of a repeated metric) made the tolerance seed_factor x inf: a drop of 0.5 passed.
    write_variance(repo, rows)
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.40}))
    for accept in (None, "take it"):  # nothing is accepted either
        text = refused(repo, accept_reason=accept)
        assert f"reports/variance.csv {problem}" in text and text.endswith(
            "; re-measure it with `python benchmarks/seed_spread.py`"), text


def test_a_blank_std_of_one_seed_keeps_the_sampling_rule(repo):
    # seed_spread.py writes a blank std where fewer than 2 seeds gave a value: that is not a damaged file.
    write_variance(repo, "within.contrique.synthetic-single.plcc,,1\nwithin.random.synthetic-single.plcc,,\n")
    assert gate.seed_std_from(repo / "reports" / "variance.csv") == SEED_STD
    assert run(repo)[0] == 0


# ----------------------------------------------------------------------------- within.csv and cross.csv sizes

@pytest.mark.parametrize("table, content, problem", [
    ("within.csv", "model,dataset,n_images\ncontrique,synthetic-single,abc\n", "line 2: n_images is 'abc'"),
    ("within.csv", "model,dataset,n_images\ncontrique,synthetic-single,4000\nrandom,synthetic-single,inf\n",
     "line 3: n_images is inf"),
    ("within.csv", "model,dataset,n_images\ncontrique,synthetic-single,-400\n", "line 2: n_images is -400"),
    ("within.csv", "model,dataset,n_images\ncontrique,synthetic-single,\n", "line 2: n_images is blank"),
    ("cross.csv", "model,train,test,n_test\ncontrique,a,a,\ncontrique,a,b,1e999\n", "line 3: n_test is inf"),
    ("cross.csv", "model,train,test,n_test\ncontrique,a,b,lots\n", "line 2: n_test is 'lots'"),
])
def test_a_test_set_size_that_is_not_a_count_is_refused(repo, table, content, problem):
    # int() of 'abc', inf or NaN was a ValueError or OverflowError traceback.
    write_text(repo / "reports" / table, content)
    text = refused(repo)
    assert f"reports/{table} {problem}, not a count of images; regenerate it with `dvc repro evaluate`" in text
    assert "Traceback" not in text


def test_whole_sizes_written_as_floats_are_counts(repo):
    write_text(repo / "reports" / "within.csv", "model,dataset,n_images\ncontrique,synthetic-single,4000.0\n")
    write_text(repo / "reports" / "cross.csv", "model,train,test,n_test\ncontrique,a,a,\ncontrique,a,b,540.0\n")
    assert gate.n_test_from_reports(repo / "reports") == {"synthetic-single": 800, "a->b": 540}
    assert run(repo)[0] == 0


# ----------------------------------------------------------------------------- params.yaml's check: section

def set_check(repo, body: str) -> None:
    write_text(repo / "params.yaml", f"evaluate: {{test_frac: 0.2}}\ncheck:\n{body}")


def test_an_empty_gate_list_is_refused_not_passed(repo):
    # It printed "passed: no gated metric (none) fell" whatever the metrics held.
    set_check(repo, "  baseline: reports/baseline.json\n  gate: []\n")
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.10}))
    text = refused(repo)
    assert "check.gate = [] is not allowed; it must be a non-empty list" in text and "passed" not in text


def test_a_baseline_that_is_the_metrics_file_is_refused(repo):
    # It compared reports/metrics.json with itself and always passed; with --accept it overwrote the metrics.
    metrics = repo / "reports" / "metrics.json"
    write_json(metrics, changed(**{"within/contrique/synthetic-single/srcc": 0.10}))
    before = metrics.read_bytes()
    for spelling in ("reports/metrics.json", "./reports/../reports/metrics.json"):
        set_check(repo, f"  baseline: {spelling}\n")
        for accept in (None, "take it"):
            text = refused(repo, accept_reason=accept)
            assert (f"check.baseline: {spelling} in {repo / 'params.yaml'} names the metrics under check ({metrics}), "
                    "so the gate would compare them with themselves and always pass; set check.baseline in "
                    f"{repo / 'params.yaml'} to the accepted baseline, reports/baseline.json") in text
            assert metrics.read_bytes() == before
    text = refused(repo, str(metrics))
    assert f"--baseline {metrics} names the metrics under check" in text
    assert "e.g. --baseline reports/baseline.json" in text


def test_accept_names_check_baseline_when_params_set_a_revision(repo):
    # It said "drop --baseline" to someone who had passed no --baseline.
    set_check(repo, "  baseline: HEAD\n")
    text = refused(repo, accept_reason="take it")
    assert (f"--accept writes an accepted-baseline file, but the baseline is git HEAD; it comes from check.baseline "
            f"in {repo / 'params.yaml'}: set that to a .json file (e.g. reports/baseline.json) or pass --baseline "
            "FILE.json") in text and "drop --baseline" not in text
    assert "drop --baseline" in refused(repo, "HEAD", accept_reason="take it")


def test_a_baseline_that_is_not_a_baseline_file_says_what_to_name(repo):
    # `git checkout params.yaml` was the advice: it restores a file that was never a baseline.
    set_check(repo, "  baseline: params.yaml\n")
    text = refused(repo)
    assert (f"check.baseline: params.yaml in {repo / 'params.yaml'} is not a baseline file (not JSON: Expecting value: "
            f"line 1 column 1 (char 0)); set check.baseline in {repo / 'params.yaml'} to the accepted baseline, "
            "reports/baseline.json, or a git revision") in text and "git checkout" not in text
    text = refused(repo, "params.yaml")
    assert "--baseline params.yaml is not a baseline file (not JSON" in text and "git checkout" not in text


# ----------------------------------------------------------------------------- JSON that parses, but not as one object

def test_a_key_repeated_in_the_baseline_is_refused(repo):
    # json keeps the last: the reviewer read 0.32, the gate compared with -1.0 and passed everything.
    path = baseline_file(repo)
    text = path.read_text()
    assert text.count('"srcc": 0.9,') == 1
    write_text(path, text.replace('"srcc": 0.9,', '"srcc": 0.32, "srcc": -1.0,'))
    for accept in (None, "take it"):
        message = refused(repo, accept_reason=accept)
        assert (f"{path}: the key 'srcc' appears twice in one object (0.32, then -1.0), and a JSON reader keeps only "
                "the last; keep one; restore it with `git checkout reports/baseline.json`") in message
    with pytest.raises(acceptance.AcceptanceError, match="the key 'srcc' appears twice"):
        acceptance.read(path)


def test_a_key_repeated_in_the_metrics_or_a_metrics_baseline_is_refused(repo, tmp_path_factory):
    metrics = repo / "reports" / "metrics.json"
    write_text(metrics, '{"within": {}, "within": {"x": {"d": {"srcc": 0.5}}}, "cross": {}}')
    assert f"{metrics}: the key 'within' appears twice in one object ({{}}, then" in refused(repo)
    write_json(metrics, BASELINE)
    other = tmp_path_factory.mktemp("other") / "old.json"
    write_text(other, '{"within": {"a": {"d": {"srcc": 0.9}}}, "cross": {"a": 1, "a": 2}}')
    assert f"{other}: the key 'a' appears twice in one object (1, then 2)" in refused(repo, str(other))


def test_a_baseline_with_a_utf8_bom_is_read(repo):
    # Some Windows editors save one; it was refused as "not valid JSON".
    path = baseline_file(repo)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, text = run(repo)
    assert code == 0 and "passed" in text, text
    assert acceptance.read(path)["accepted"][0]["reason"] == "initial baseline"


def test_json_nested_too_deep_is_not_a_baseline_file(repo, tmp_path_factory):
    # A RecursionError traceback from the JSON parser.
    write_text(baseline_file(repo), "[" * 100000)
    text = refused(repo)
    assert (f"check.baseline: reports/baseline.json in {repo / 'params.yaml'} is not a baseline file (its JSON nests "
            "deeper than the parser follows; a metrics file nests 4 levels); restore it with `git checkout "
            "reports/baseline.json`") in text
    other = tmp_path_factory.mktemp("other") / "deep.json"
    write_text(other, '{"a": ' * 100000)
    assert f"--baseline {other} is not a baseline file (its JSON nests deeper" in refused(repo, str(other))
    write_text(repo / "reports" / "metrics.json", "[" * 100000)
    assert f"{repo / 'reports' / 'metrics.json'} is not a metrics file: its JSON nests deeper" in refused(repo)
    with pytest.raises(acceptance.AcceptanceError, match="is not a baseline file: its JSON nests deeper"):
        acceptance.read(baseline_file(repo))


def test_a_device_as_the_metrics_file_is_not_called_missing():
    from iqabench.gate_inputs import GateError, load_metrics

    with pytest.raises(GateError, match="/dev/null is not a regular file"):
        load_metrics("/dev/null")


def test_a_device_as_the_baseline_is_not_called_missing(tmp_path):
    # "/dev/null does not exist; accept the current ... as the baseline with --accept": advice to write over it.
    repo = accepted(tmp_path, BASELINE, SEED_STD)
    text = refused(repo, "/dev/null")
    assert "/dev/null is not a regular file (a device, pipe or socket), not a baseline file" in text
    assert "does not exist" not in text and "--accept" not in text
