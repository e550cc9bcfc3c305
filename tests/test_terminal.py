"""`iqabench compare` and `iqabench datasets` in an 80-column terminal: readable tables, no cell folded mid-word."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import fakestudy
from test_score_errors import row  # noqa: F401 - a fixture: a tiny encoder row with its fitted regressor
from iqabench import tracking
from iqabench.cli import app

WIDTH = 80


def assert_readable(output: str, cells: list[str], width: int = WIDTH) -> None:
    """Every line fits ``width`` and every expected cell is whole on one line (a fold would split it)."""
    lines = output.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, f"lines wider than {width}:\n" + "\n".join(too_wide)
    for cell in cells:
        assert any(cell in line for line in lines), f"{cell!r} is not whole on any line:\n{output}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two logged runs of a fake study: the second at another commit, seed 1, every SRCC 0.02 higher."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        for shift, seed, commit in ((0.0, 0, "0123456789abcdef"), (0.02, 1, "fedcba9876543210")):
            run = tracking.log_study(experiment="iqabench", run_name=f"{commit[:8]} seed={seed}",
                                     **fakestudy.inputs(root, shift=shift, seed=seed, commit=commit))
            assert run is not None
    finally:
        mp.undo()
        import mlflow

        mlflow.set_tracking_uri(None)
    return uri


def _compare(uri: str, *args: str):
    return CliRunner().invoke(app, ["compare", "--tracking-uri", uri, *args], env={"COLUMNS": str(WIDTH)})


def test_compare_pivots_models_by_runs_at_80_columns(store):
    shown = _compare(store)
    assert shown.exit_code == 0, shown.output
    assert_readable(shown.output, [
        "01234567 seed=0", "fedcba98 seed=1", "params that differ: seed: 0 | 1",
        "synthetic-single  (SRCC)", "synthetic-mixed  (SRCC)", "Δ #2-#1",
        *fakestudy.MODELS, "0.6100", "0.6300", "+0.0200", "0.8300", "0.8500"])
    # The legend: label, start and run id at fixed width, then the name (a long one wraps on its own).
    legend = [line for line in shown.output.splitlines() if line.startswith("#")]
    assert [re.fullmatch(r"#(\d)  \d{4}-\d\d-\d\d \d\d:\d\d UTC  run [0-9a-f]{8}  (.*)", line).groups()
            for line in legend] == [("1", "01234567 seed=0"), ("2", "fedcba98 seed=1")]
    # Models are rows: each model's line holds both runs' values and the change.
    line = next(line for line in shown.output.splitlines() if "fr:gmsd" in line)
    assert "0.8300" in line and "0.8500" in line and "+0.0200" in line


@pytest.mark.parametrize("name", ["fr:gmsd", "fr_gmsd"])
def test_compare_model_filter_takes_the_id_as_written_or_sanitised(store, name):
    shown = _compare(store, "--model", name, "--dataset", "synthetic-mixed")
    assert shown.exit_code == 0, shown.output
    assert "fr:gmsd" in shown.output and "contrique" not in shown.output and "synthetic-single" not in shown.output


def test_compare_cross_pairs_fit_too(store):
    shown = _compare(store, "--cross", "--metric", "srcc", "--metric", "plcc")
    assert shown.exit_code == 0, shown.output
    assert_readable(shown.output, ["synthetic-single -> synthetic-mixed  (SRCC)",
                                   "synthetic-mixed -> synthetic-single  (PLCC)", "0.4100"])


@pytest.mark.parametrize("option, value, known", [("--model", "fr:gmds", "arniqa, contrique, fr:gmsd"),
                                                  ("--dataset", "koniq", "synthetic-mixed, synthetic-single"),
                                                  ("--metric", "srocc", "plcc, srcc")])
def test_compare_unknown_names_fail_with_the_known_ones(store, option, value, known):
    shown = _compare(store, option, value)
    assert shown.exit_code == 2
    assert f"unknown {option[2:].replace('metric', 'statistic')} '{value}'" in shown.output
    assert known in shown.output


def test_compare_without_a_store_says_where_it_looked_and_creates_none(tmp_path):
    missing = tmp_path / "elsewhere" / "mlflow.db"
    shown = _compare(f"sqlite:///{missing}")
    assert shown.exit_code == 2
    assert f"no MLflow store at {missing}" in " ".join(shown.output.split())
    assert not missing.parent.exists()  # MLflow's client would have created an empty store there


def test_compare_with_the_server_down_fails_in_one_line(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail_fast keeps a setting the user made
    shown = _compare(f"http://127.0.0.1:{port}")
    assert shown.exit_code == 2
    assert f"cannot read the MLflow store http://127.0.0.1:{port}" in " ".join(shown.output.split())
    assert "Traceback" not in shown.output


@pytest.mark.parametrize("kind", ["scheme", "garbage-db"])
def test_compare_on_a_store_mlflow_cannot_read_fails_in_one_line_naming_it(tmp_path, kind):
    """An unknown scheme raised UnsupportedModelRegistryStoreURIException from the client's constructor, a
    file that is not a database sqlalchemy's DatabaseError: both as tracebacks."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 16)
    uri = "foo://bar" if kind == "scheme" else f"sqlite:///{garbage}"
    shown = _compare(uri)
    text = " ".join(shown.output.split())
    assert shown.exit_code == 2 and "Traceback" not in shown.output, shown.output
    assert f"error: cannot read the MLflow store {uri} (" in text  # after any library deprecation warning
    assert ("unsupported URI 'foo://bar'" if kind == "scheme" else "file is not a database") in text
    assert "--tracking-uri" in text
    assert garbage.read_bytes() == bytes(range(256)) * 16 and sorted(tmp_path.iterdir()) == [garbage]


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_compare_refuses_a_limit_below_one(store, limit):
    shown = _compare(store, "-n", limit)
    assert shown.exit_code == 2 and "Traceback" not in shown.output
    text = " ".join(shown.output.replace("│", " ").split())
    assert "Invalid value for '--limit' / '-n': Input should be greater than or equal to 1" in text, text


def test_compare_leaves_out_old_runs_that_do_not_fit(store):
    shown = CliRunner().invoke(app, ["compare", "--tracking-uri", store], env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    assert "1 older run(s) left out to fit 40 columns" in " ".join(shown.output.split())
    table_lines = [line for line in shown.output.splitlines() if line.startswith(("┃", "│"))]
    assert table_lines and all(len(line) <= 40 for line in table_lines)


def test_datasets_table_fits_80_columns_and_show_gives_the_details(tmp_path):
    (tmp_path / "reg.json").write_text("{}")  # an empty registry (a missing one adds a note, one unwrapped line)
    opts = ["datasets", "--registry", str(tmp_path / "reg.json"), "--data-root", str(tmp_path / "raw")]
    shown = CliRunner().invoke(app, opts, env={"COLUMNS": str(WIDTH)})
    assert shown.exit_code == 0, shown.output
    assert_readable(shown.output, ["synthetic-single", "koniq10k-subset", "pristine-unlabelled", "kadis700k",
                                   "not built", "missing", "iqabench datasets show NAME"])
    detail = CliRunner().invoke(app, [*opts, "show", "spaq"], env={"COLUMNS": str(WIDTH)})
    assert detail.exit_code == 0, detail.output
    assert "MOS [0, 100], higher is better" in detail.output and "datasets add spaq --from PATH" in detail.output
    assert max(len(line) for line in detail.output.splitlines()) <= WIDTH
    # What a split keeps together is said where it differs: references (TID2013), prompts (AGIQA-3K), images.
    for name, content in (("tid2013", "one per reference image"), ("agiqa3k", "one per text prompt"),
                          ("spaq", "each image is its own content")):
        shown = CliRunner().invoke(app, [*opts, "show", name], env={"COLUMNS": str(WIDTH)}).output
        assert content in " ".join(shown.split()), shown
    unknown = CliRunner().invoke(app, [*opts, "show", "spaqq"], env={"COLUMNS": str(WIDTH)})
    assert unknown.exit_code == 1 and "unknown dataset 'spaqq'" in unknown.output and "koniq10k" in unknown.output


def _results_md(tmp_path):
    """A results.md with the report stage's own tables: the leaderboard, the within table (8 columns) and the
    paired comparisons, for three rows (one full-reference, whose id has a colon) on two datasets."""
    import pandas as pd

    from iqabench import reporting

    models, datasets = ["contrique", "arniqa", "fr:deepwsd"], ["synthetic-single", "synthetic-mixed"]
    within = pd.DataFrame([{"model": m, "dataset": d, "n_images": 580, "srcc": 0.4 + 0.1 * i + 0.01 * j,
                            "srcc_q25": 0.35, "srcc_q75": 0.65, "plcc": 0.5, "krcc": 0.3, "rmse": 0.2,
                            "logistic": "5pl", "n_missing": 0}
                           for i, m in enumerate(models) for j, d in enumerate(datasets)])
    significance = pd.DataFrame([{"dataset": d, "model_a": a, "model_b": b, "diff": 0.027, "lo": -0.057,
                                  "hi": 0.111, "p_raw": 0.479, "p_holm": 1.0, "verdict": "inside noise",
                                  "verdict_wilcoxon": "inside noise"}
                                 for d in datasets for k, a in enumerate(models) for b in models[k + 1:]])
    path = tmp_path / "results.md"
    path.write_text("# iqabench results\n\n## Leaderboard (within-dataset SRCC)\n\n"
                    + reporting.leaderboard_markdown(within) + "\n## Within-dataset\n\n"
                    + reporting.within_markdown(within, significance) + "\n![cross-dataset SRCC](cross_srcc.png)\n")
    return path


def test_report_fits_80_columns_without_cutting_a_cell(tmp_path, monkeypatch):
    """rich's Markdown cut the within table's cells to fit ("synthetic…" for both datasets); the tables are
    now wrapped at spaces or split, with the row labels repeated in each part."""
    (tmp_path / "reports").mkdir()
    path = _results_md(tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    shown = CliRunner().invoke(app, ["report", "--path", "reports/results.md"], env={"COLUMNS": str(WIDTH)})
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.output
    assert_readable(shown.output, ["synthetic-single", "synthetic-mixed", "fr:deepwsd", "0.600 (0.350-0.650)",
                                   "[-0.057, +0.111]", "inside noise", "**0.610**",  # piped: bold stays marked
                                   "Figure: cross-dataset SRCC: reports/cross_srcc.png"])
    lines = shown.output.splitlines()
    # The within table (model, dataset and six statistics) is split in two, each part labelled by model and dataset.
    assert sum(line.split()[:2] == ["model", "dataset"] for line in lines) == 2
    row = next(line for line in lines if line.split()[:2] == ["fr:deepwsd", "synthetic-mixed"])
    assert "0.610 (0.350-0.650)" in row
    # Wide enough, a table is one table again.
    wide = CliRunner().invoke(app, ["report", "--path", str(path)], env={"COLUMNS": "160"})
    assert sum(line.split()[:2] == ["model", "dataset"] for line in wide.output.splitlines()) == 1


def test_datasets_with_a_long_registered_name_and_path_stay_whole(tmp_path):
    """A user's dataset with a long name squeezed every cell ("register…", "pristine-unlabel…"); a long path
    was folded at 80 columns, so it could not be copied. Now the kind column gives way and a path stays whole."""
    import json

    folder = tmp_path / "a_rather_long_folder_name" / "with" / "several" / "levels" / "of" / "the" / "koniq10k_release"
    folder.mkdir(parents=True)
    gone = tmp_path / "gone" / "folder" / "that" / "no" / "longer" / "exists" / "anywhere" / "on" / "this" / "machine"
    registry = tmp_path / "reg.json"
    registry.write_text(json.dumps({
        "koniq10k": {"kind": "spec", "path": str(folder), "images": 10073},
        "my-lab-portraits-2024-rated": {"kind": "generic", "path": str(gone), "csv": "scores.csv", "image_col": "img",
                                        "score_col": "mos", "images": 12, "lo": 1, "hi": 5,
                                        "higher_is_better": True}}))
    opts = ["datasets", "--registry", str(registry), "--data-root", str(tmp_path / "raw")]
    shown = CliRunner().invoke(app, opts, env={"COLUMNS": str(WIDTH)})
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.output
    assert_readable(shown.output, ["my-lab-portraits-2024-rated", "registered", "not built", "kadis700k"])
    for name, path in (("koniq10k", folder), ("my-lab-portraits-2024-rated", gone)):
        detail = CliRunner().invoke(app, [*opts, "show", name], env={"COLUMNS": str(WIDTH)})
        assert detail.exit_code == 0, detail.output
        assert any(line.endswith(str(path)) for line in detail.output.splitlines()), detail.output
        # Everything but the path wraps at spaces within 80 columns, under its label.
        assert all(len(line) <= WIDTH or str(path) in line for line in detail.output.splitlines())


@pytest.mark.parametrize("module", ["iqabench.cli", "iqabench.datasets.cli"])
def test_the_width_is_read_when_a_command_runs_not_when_the_module_was_imported(module, monkeypatch):
    """A module-level Console kept the COLUMNS of whichever test imported the CLI first (a 160-column report
    came out split for 80)."""
    import importlib

    cli = importlib.import_module(module)
    for columns in (40, 123):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert cli.console().width == columns


@pytest.mark.parametrize("name, problem", [("results", "is a folder; give the results file"),
                                           ("bin.md", "is not a UTF-8 markdown file (byte 0"),
                                           ("empty.md", "is empty: rerun `dvc repro -s -f report`"),
                                           ("blank.md", "is empty"),
                                           ("gone.md", "does not exist: run `make repro`"),
                                           ("within.csv", "is not a markdown report; give reports/results.md"),
                                           ("pipe.md", "is not a regular file (a device, pipe or socket)")])
def test_report_on_a_file_it_cannot_show_says_what_it_is_in_one_line(tmp_path, name, problem):
    """Random bytes gave a UnicodeDecodeError traceback, a folder "does not exist", an empty file nothing at all
    (exit 0)."""
    (tmp_path / "results").mkdir()
    (tmp_path / "bin.md").write_bytes(b"\x82\xff\x00PNG" + bytes(range(256)))
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\n")
    (tmp_path / "within.csv").write_text("model,dataset,srcc\ncontrique,a,0.5\n")
    os.mkfifo(tmp_path / "pipe.md")  # "does not exist", like /dev/null
    before = sorted(tmp_path.rglob("*"))
    shown = CliRunner().invoke(app, ["report", "--path", str(tmp_path / name)], env={"COLUMNS": str(WIDTH)})
    assert shown.exit_code == 1 and "Traceback" not in shown.output
    assert shown.output == f"error: {tmp_path / name} {problem}" + shown.output.split(problem, 1)[1]
    assert len(shown.output.splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_cli_warnings_are_one_plain_line_each_and_said_once(row, tmp_path):
    """`iqabench score` on a 16-bit grey PNG printed Python's `features.py:108: UserWarning: ...` and the source
    line, twice (the image is read for its size and again for its features)."""
    from PIL import Image

    deep = tmp_path / "g16.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (48, 48), dtype=np.uint16)).save(deep)
    model, regressors = row
    shown = CliRunner().invoke(app, ["score", str(deep), "--model", model, "--regressors", str(regressors)])
    assert shown.exit_code == 0, shown.output
    said = [line for line in shown.output.splitlines() if str(deep) in line and "16-bit" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {deep}: "), shown.output
    assert "UserWarning" not in shown.output and ".py:" not in shown.output


def test_score_in_a_terminal_prints_file_names_as_they_are_not_as_markup(monkeypatch):
    # "holiday [final].png" printed as "holiday .png": rich read the brackets as a style tag.
    import io

    import pandas as pd
    from rich.console import Console

    from iqabench import cli, scoring

    names = ["holiday [final].png", "holiday [draft].png", "[bold]x[/bold].png"]
    frame = pd.DataFrame({"image": names, "width": 64, "height": 48, "quality": [61.2, 40.5, 50.0],
                          "scale": "0-100", "model": "brisque"})
    monkeypatch.setattr(scoring, "score_images", lambda *a, **k: frame)
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", lambda: Console(file=out, force_terminal=True, width=WIDTH, color_system=None))
    result = CliRunner().invoke(app, ["score", "--model", "brisque", "a.png"])
    assert result.exit_code == 0, result.output
    assert_readable(out.getvalue(), names)


def test_compare_on_a_locked_store_says_it_is_busy_not_broken(tmp_path):
    # "database is locked … is not a readable MLflow store; pass --tracking-uri … sqlite:///mlflow.db": the store
    # was fine, a run was writing to it.
    import sqlite3

    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        text = " ".join(_compare(f"sqlite:///{db}").output.split())
    finally:
        holder.close()
    assert "database is locked" in text and f"{db} is busy (another process" in text and "not a readable" not in text
