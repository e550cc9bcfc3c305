"""`iqabench compare --commit` matches a commit by its prefix: `-c %` or `-c _` (SQL LIKE wildcards, which MLflow's
filter cannot escape) matched every run, and showed them as runs "at commit %"."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import fakestudy
from iqabench import compare, tracking
from iqabench.cli import app

COMMITS = ("0123456789abcdef", "fedcba9876543210-dirty")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two logged runs of a fake study at two commits (the second with uncommitted changes)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        for seed, commit in enumerate(COMMITS):
            assert tracking.log_study(experiment="iqabench", run_name=f"{commit[:8]} seed={seed}",
                                      **fakestudy.inputs(root, seed=seed, commit=commit)) is not None
    finally:
        mp.undo()
        import mlflow

        mlflow.set_tracking_uri(None)
    return uri


def _compare(uri, *args):
    return CliRunner().invoke(app, ["compare", "--tracking-uri", uri, *args], env={"COLUMNS": "120"})


@pytest.mark.parametrize("commit", ["%", "_", "0%", "01_3", "*", "main", "0123'; --", "HEAD~1"])
def test_a_commit_that_is_no_hex_prefix_is_refused(store, commit):
    shown = _compare(store, "-c", commit)
    assert shown.exit_code == 2
    assert (f"error: --commit {commit!r} is not a git commit: give its hash or the first characters of it (hex "
            "digits, e.g. 3f2a9c1; `git log --oneline` lists them)") in " ".join(shown.output.split())


def test_it_is_refused_before_the_store_is_opened(tmp_path):
    shown = _compare(f"sqlite:///{tmp_path / 'none.db'}", "-c", "%")
    assert shown.exit_code == 2 and "is not a git commit" in shown.output and not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("commit, runs", [("0123", [COMMITS[0]]), ("FEDC", [COMMITS[1]]),
                                          (COMMITS[1], [COMMITS[1]]), ("0", [COMMITS[0]]), ("9", [])])
def test_a_hex_prefix_matches_the_runs_at_that_commit(store, commit, runs):
    comparison = compare.load(commit=commit, tracking_uri=store)
    assert comparison.runs["commit"].tolist() == runs


def test_commit_prefix():
    assert compare.commit_prefix(" 3F2A9C1 ") == "3f2a9c1"
    assert compare.commit_prefix("a" * 64) == "a" * 64  # a SHA-256 repository
    with pytest.raises(compare.CompareError):
        compare.commit_prefix("a" * 65)


def test_runs_without_iqabench_results_are_called_so_not_an_unknown_statistic():
    # An experiment named iqabench logged by another tool: "unknown statistic 'srcc'; the runs shown have: none".
    import pandas as pd

    with pytest.raises(compare.CompareError, match=r"the runs shown hold no within-dataset results .* not logged by "
                                                   r"iqabench's report stage"):
        compare.select(pd.DataFrame(columns=compare.VALUE_COLUMNS))


def test_params_that_differ_tell_a_missing_param_from_an_empty_one():
    import pandas as pd

    from iqabench import compare

    runs = pd.DataFrame({"params": [{"seed": "0"}, {"seed": "0", "evaluate.arniqa_splits": ""},
                                    {"seed": "1", "evaluate.arniqa_splits": "/data/arniqa"}]})
    assert compare.params_diff(runs) == {"evaluate.arniqa_splits": ["—", "''", "/data/arniqa"],
                                         "seed": ["0", "0", "1"]}
