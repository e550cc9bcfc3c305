"""`iqabench check` given user text that rich would read as markup (a reason, a path, a model name), paths the file
system refuses (a name over 255 bytes, a link loop), a committed file that is no JSON, an empty --baseline, a run from
a subfolder, and --accept of metrics that strict JSON cannot hold; errors go to stderr, unwrapped."""
from __future__ import annotations

import copy
import json
import os

import pytest
from rich.console import Console
from test_gate import BASELINE, SEED_STD, changed
from test_gate_cli import accepted, git
from test_gate_inputs import baseline_file

from iqabench import acceptance, gate
from iqabench.io import write_json, write_text


@pytest.fixture
def repo(tmp_path):
    """A checkout with an accepted reports/baseline.json (BASELINE) and the same metrics as the current run."""
    return accepted(tmp_path, BASELINE, SEED_STD)


def run(repo, baseline=None, metrics=None, **kwargs) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = gate.run_check(baseline, metrics_path=metrics or repo / "reports" / "metrics.json",
                          params_path=repo / "params.yaml", console=console, **kwargs)
    return code, console.export_text()


def refused(repo, *args, **kwargs) -> str:
    """Run the gate; it must exit 2 with one error line and no write to the baseline file."""
    before = baseline_file(repo).read_bytes()
    code, text = run(repo, *args, **kwargs)
    assert code == 2 and text.count("error:") == 1 and "Traceback" not in text, text
    assert baseline_file(repo).read_bytes() == before
    return " ".join(text.split())


def cli(cwd, monkeypatch, *args):
    typer_testing = pytest.importorskip("typer.testing")
    import typer

    app = typer.Typer()
    app.command("check")(gate.check_command)
    monkeypatch.chdir(cwd)
    return typer_testing.CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- user text is never markup

@pytest.mark.parametrize("reason", ["fixed per [/review] comments", "see [#12] and [bold]x",
                                    ":thumbs_up: [red]x[/red]"])
def test_a_reason_in_brackets_is_recorded_and_shown_as_written(repo, reason):
    # "[/review]" was a MarkupError in every later check (the title quotes the last reason); "[#12]" vanished.
    code, text = run(repo, accept_reason=reason)
    assert code == 0, text
    assert acceptance.read(baseline_file(repo))["accepted"][-1]["reason"] == reason
    code, text = run(repo)  # the title quotes the last reason
    assert code == 0 and "last accepted" in flat(text) and repr(reason) in flat(text), text  # a long tmp path wraps
    assert run(repo, accept_reason="again")[0] == 0


def test_a_metrics_path_in_brackets_is_shown_as_written(repo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths")
    missing = folder / "[/x]" / "m.json"  # a MarkupError traceback
    text = refused(repo, metrics=missing)
    assert f"error: {missing} does not exist" in text
    bold = folder / "[bold]" / "m.json"  # printed as .../m.json
    write_json(bold, BASELINE)
    code, text = run(repo, metrics=bold)
    assert code == 0 and str(bold) in flat(text), text


def test_a_model_name_in_brackets_is_shown_as_written(repo):
    metrics = copy.deepcopy(BASELINE)
    metrics["within"]["modèle[red]x"] = {"synthetic-single": {"srcc": 0.4, "plcc": 0.4}}
    write_json(repo / "reports" / "metrics.json", metrics)
    code, text = run(repo)
    assert code == 0 and "within.modèle[red]x.synthetic-single.srcc" in text, text


# ----------------------------------------------------------------------------- what git holds at a revision

def test_a_committed_file_that_is_not_json_says_what_it_is(repo):
    (repo / "reports" / "srcc.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    git(repo, "add", "reports/srcc.png")
    git(repo, "commit", "-q", "-m", "a figure")
    text = refused(repo, "HEAD:reports/srcc.png")  # a UnicodeDecodeError traceback
    assert "the baseline reports/srcc.png at HEAD is not UTF-8 JSON (byte 0 is 0x89)" in text
    assert "give --baseline REV:reports/baseline.json" in text
    text = refused(repo, "HEAD:reports")  # "not valid JSON (Expecting value: line 1 column 1 (char 0))"
    assert ("the baseline reports at HEAD is a folder in git; give a file in it, e.g. "
            "--baseline HEAD:reports/baseline.json") in text and "Expecting value" not in text
    text = refused(repo, "HEAD:params.yaml")
    assert "the baseline params.yaml at HEAD is not JSON (Expecting value, line 1 column 1)" in text


# ----------------------------------------------------------------------------- paths the file system refuses

def test_a_name_over_the_file_system_limit_is_one_line(repo):
    long_name = repo / ("m" * 300 + ".json")  # OSError [Errno 36] tracebacks
    text = refused(repo, metrics=long_name)
    assert f"error: {str(long_name)[:80]}... ({len(str(long_name).encode())} bytes) has a name longer than the " \
           "file system allows" in text and "m" * 100 not in text
    for spec in ("b" * 300 + ".json", "HEAD:" + "b" * 300):
        text = refused(repo, spec)
        assert "has a name longer than the file system allows" in text and "b" * 100 not in text, text


def test_a_link_loop_is_called_a_link_loop(repo):
    loop = repo / "reports" / "loop.json"
    loop.symlink_to(loop.name)
    text = refused(repo, metrics=loop)  # "does not exist; run `dvc repro`"
    assert f"error: {loop} is a symbolic link loop" in text and "does not exist" not in text
    (repo / "loop").symlink_to("loop")
    text = refused(repo, "loop")  # read as a git revision: "invalid object name 'loop'"
    assert "--baseline loop is a symbolic link loop" in text and "invalid object name" not in text


def test_a_link_to_nothing_says_where_it_points(repo):
    dangling = repo / "reports" / "gone.json"
    dangling.symlink_to("elsewhere.json")
    assert f"{dangling} is a link to elsewhere.json, which does not exist" in refused(repo, metrics=dangling)


# ----------------------------------------------------------------------------- where the command runs, what it is given

def test_check_from_a_subfolder_reads_the_repository_s_files(repo, monkeypatch):
    (repo / "src").mkdir()
    outcome = cli(repo / "src", monkeypatch)  # "reports/metrics.json does not exist; run dvc repro"
    assert outcome.exit_code == 0, outcome.output
    assert "passed" in outcome.stdout and os.path.join("..", "reports", "metrics.json") in outcome.stdout


def test_an_empty_baseline_is_refused(repo):
    write_json(repo / "reports" / "metrics.json", changed(**{"within/contrique/synthetic-single/srcc": 0.10}))
    for empty in ("", "  "):  # it gated against check.baseline and could pass
        text = refused(repo, empty)
        assert "--baseline is empty; give the accepted baseline file" in text and "passed" not in text


def test_an_empty_metrics_option_is_refused_not_read_as_the_working_folder(repo, monkeypatch):
    from typer.testing import CliRunner

    from iqabench.cli import app

    monkeypatch.chdir(repo)
    shown = CliRunner().invoke(app, ["check", "--metrics", ""])  # as a Path, "" was "." ("is a folder")
    assert shown.exit_code == 2 and "error: --metrics is empty; give the metrics file" in shown.output, shown.output


@pytest.mark.parametrize("value, problem", [
    (float("nan"), "is NaN, which strict JSON cannot hold"),
    (float("inf"), "is inf, which strict JSON cannot hold"),
    ("bad", "is 'bad', not a number"),
    (None, "is null, not a number"),
])
def test_accept_refuses_an_ungated_metric_strict_json_cannot_hold(repo, value, problem):
    # NaN was written into baseline.json (jq and JavaScript refuse the file); "bad" was accepted as a metric.
    metrics = copy.deepcopy(BASELINE)
    metrics["within"]["contrique"]["synthetic-single"]["rmse"] = value
    write_json(repo / "reports" / "metrics.json", metrics)
    text = refused(repo, accept_reason="take it")
    assert f"reports/metrics.json: within.contrique.synthetic-single.rmse {problem}; regenerate it with `dvc repro`" \
           in text
    assert run(repo)[0] == 0  # the gate reads SRCC and PLCC only: an ungated value does not fail a check
    json.loads(baseline_file(repo).read_text(), parse_constant=lambda name: pytest.fail(name))


# ----------------------------------------------------------------------------- how errors are printed

def test_errors_go_to_stderr_on_one_line(repo, monkeypatch):
    missing = repo / ("a-long-folder-name-" * 6) / "metrics.json"
    outcome = cli(repo, monkeypatch, "--metrics", str(missing))
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith(f"error: {missing} does not exist") and outcome.stderr.count("\n") == 1
    assert "error" not in outcome.stdout


def test_a_null_file_and_a_huge_number_are_named_shortly(repo, tmp_path_factory):
    other = tmp_path_factory.mktemp("other") / "null.json"
    write_text(other, "null")
    assert f"{other} holds null, expected a JSON object" in refused(repo, str(other))  # "holds a NoneType"
    payload = json.loads(baseline_file(repo).read_text())
    payload["metrics"]["within"]["contrique"]["synthetic-single"]["srcc"] = 10 ** 400
    write_json(baseline_file(repo), payload)
    text = refused(repo)
    assert "within.contrique.synthetic-single.srcc is 100000000000... (401 digits), outside [-1, 1]" in text
    assert "0" * 100 not in text


def test_a_git_that_hangs_is_one_line(repo, monkeypatch):
    # subprocess.TimeoutExpired (a git waiting on a lock or a network filesystem) was a traceback.
    import subprocess

    from iqabench import gate_inputs

    def hung(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout", 60))

    monkeypatch.setattr(gate_inputs.subprocess, "run", hung)
    with pytest.raises(gate_inputs.GateError, match=r"^cannot run git to read the baseline HEAD:reports/metrics.json "
                                                    r"\(Command .* timed out after 60 seconds\); pass --baseline FILE"):
        gate_inputs.baseline_from_git("HEAD", repo=repo)
