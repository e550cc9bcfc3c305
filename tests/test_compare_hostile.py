"""`iqabench compare` on hostile input: stores it must not touch, URIs it cannot read, empty options, and logged
names or values that broke the table (rich markup, NaN, NFD, 1e308). Each case was a traceback, a wrong answer,
or a store that MLflow changed while only reading it."""
from __future__ import annotations

import math
import sqlite3
import unicodedata
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from iqabench import compare, compare_store, tracking_store
from iqabench.cli import app

CAFE = unicodedata.normalize("NFC", "café")
EVIL = "[red]evil[/red]"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store written with MLflow's client: experiment `odd` (two parent runs whose models hold markup, NaN and
    1e308, on the dataset café) and experiment `[/x] test` (one FAILED run only)."""
    import mlflow

    root = tmp_path_factory.mktemp("hostile")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    eid = client.create_experiment("odd")
    for value in (1e308, -1e308):
        parent = client.create_run(eid, run_name=f"run {value:g}", tags={"git_commit": "0123abcd"})
        for model, metrics in ((EVIL, {"srcc": 0.5}), ("constant", {"srcc": math.nan}),
                               ("wild", {"srcc": 0.25, "rmse": value})):
            child = client.create_run(eid, tags={"mlflow.parentRunId": parent.info.run_id, "model": model})
            for statistic, number in metrics.items():
                client.log_metric(child.info.run_id, f"within.{CAFE}.{statistic}", number)
            client.set_terminated(child.info.run_id)
        client.set_terminated(parent.info.run_id)
    failed = client.create_run(client.create_experiment("[/x] test"))
    client.set_terminated(failed.info.run_id, status="FAILED")
    return root, uri


def _compare(*args, env=None):
    return CliRunner().invoke(app, ["compare", *args], env={"COLUMNS": "100", **(env or {})})


def _one_line_error(shown, code=2) -> str:
    assert shown.exit_code == code, shown.output
    assert "Traceback" not in shown.output and shown.stdout == "", shown.output
    return " ".join(shown.stderr.split())


def test_another_programs_sqlite_file_is_refused_untouched(tmp_path):
    # MLflow added its ~66 tables to it, then said "no experiment 'iqabench' (it has ['Default'])".
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text)")
    before = other.read_bytes()
    text = _one_line_error(_compare("--tracking-uri", f"sqlite:///{other}"))
    assert f"error: {other} is not an MLflow store (no table experiments; it holds 1 other table(s)" in text
    assert "nothing was written" in text and other.read_bytes() == before


def test_an_empty_file_stays_empty(tmp_path):
    empty = tmp_path / "mlflow.db"
    empty.touch()  # MLflow grew it to ~954 KB
    text = _one_line_error(_compare("--tracking-uri", f"sqlite:///{empty}"))
    assert f"{empty} is not an MLflow store (no table experiments" in text and "make repro" in text
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_folder_is_called_a_folder(tmp_path):
    (tmp_path / "mlflow.db").mkdir()
    text = _one_line_error(_compare("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert f"{tmp_path / 'mlflow.db'} is a folder, not an MLflow store" in text  # not "no MLflow store … repro"


@pytest.mark.parametrize("how", ["option", "variable"])
def test_an_invalid_url_is_one_line_naming_where_it_came_from(how):
    # ValueError: Invalid IPv6 URL, from tracking_store.in_memory, as a traceback.
    bad = "http://[::1"
    args, env = (["--tracking-uri", bad], {}) if how == "option" else ([], {"MLFLOW_TRACKING_URI": bad})
    text = _one_line_error(_compare(*args, env=env))
    named = "--tracking-uri 'http://[::1'" if how == "option" else "MLFLOW_TRACKING_URI='http://[::1'"
    assert f"error: {named} is not a valid URL (Invalid IPv6 URL)" in text


@pytest.mark.parametrize("value", ["garbage", "/tmp/some/folder", "file:///x"])
def test_a_file_store_uri_is_named_not_mlflows_maintenance_page(value, tmp_path):
    # MLflow's "The filesystem tracking backend (e.g., './mlruns') is in maintenance mode …", cut at 300 characters.
    text = _one_line_error(_compare(env={"MLFLOW_TRACKING_URI": value}))
    assert (f"error: MLFLOW_TRACKING_URI='{value}' is not a tracking URI iqabench reads" in text
            and "sqlite:///FILE or http(s)://HOST[:PORT]" in text and "maintenance" not in text)


def test_a_refused_connection_keeps_its_cause(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    text = _one_line_error(_compare("--tracking-uri", f"http://127.0.0.1:{port}"))
    assert "Connection refused" in text  # it was cut off after 300 characters of retry wording


def test_short_reason_keeps_the_root_cause():
    long = ("API request to http://127.0.0.1:9/api/2.0/mlflow/experiments/get-by-name failed with exception "
            "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /api/2.0/mlflow/"
            "experiments/get-by-name?experiment_name=iqabench (Caused by NewConnectionError(\"HTTPConnection(host="
            "'127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused\"))")
    assert compare_store.short_reason(long) == ("API request to http://127.0.0.1:9/api/2.0/mlflow/experiments/"
                                                 "get-by-name failed: [Errno 111] Connection refused")
    assert compare_store.short_reason("short\nsecond line") == "short"


def test_from_a_subfolder_the_default_store_is_the_repositorys(store, tmp_path, monkeypatch):
    # "no MLflow store at mlflow.db: run make repro here" from `cd src`.
    root, _ = store
    (root / "params.yaml").touch()
    (root / "src").mkdir(exist_ok=True)
    monkeypatch.chdir(root / "src")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shown = _compare("-e", "odd")
    assert shown.exit_code == 0, shown.output
    assert "wild" in shown.output
    monkeypatch.chdir(tmp_path)  # outside any repository: the cwd's mlflow.db, named in full
    text = _one_line_error(_compare("-e", "odd"))
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}: run `make repro`" in text


def test_hints_name_make_repro_and_failed_runs_are_counted(store):
    _, uri = store
    text = _one_line_error(_compare("--tracking-uri", uri, "-e", "none"))
    assert "no experiment 'none' in" in text and "run `make repro`" in text and "dvc repro` to log" not in text
    # The experiment's name is printed as written: "[/x]" was a MarkupError traceback.
    text = _one_line_error(_compare("--tracking-uri", uri, "-e", "[/x] test"), code=1)
    assert text.startswith("no finished runs in experiment '[/x] test' (1 failed run(s) skipped); run `make repro`")


@pytest.mark.parametrize("option", ["-c", "--tracking-uri", "-e", "-m", "-d", "--metric"])
def test_an_empty_option_is_refused_not_read_as_its_default(option, tmp_path):
    # `-c "$SHA"` with $SHA unset showed the runs of every commit.
    text = _one_line_error(_compare("--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", option, ""))
    assert "is empty (an unset shell variable?)" in text and not (tmp_path / "x.db").exists()


def test_logged_names_are_shown_literally_and_nan_models_stay(store):
    _, uri = store
    shown = _compare("--tracking-uri", uri, "-e", "odd")
    assert shown.exit_code == 0, shown.output
    assert EVIL in shown.output  # rich markup showed it as "evil", which -m then refused
    constant = next(line for line in shown.output.splitlines() if "constant" in line)
    assert constant.count("—") == 3  # NaN in every run: the row was dropped
    shown = _compare("--tracking-uri", uri, "-e", "odd", "-m", EVIL)
    assert shown.exit_code == 0 and EVIL in shown.output and "constant" not in shown.output, shown.output


def test_a_dataset_typed_decomposed_is_found(store):
    _, uri = store
    nfd = unicodedata.normalize("NFD", CAFE)
    shown = _compare("--tracking-uri", uri, "-e", "odd", "-d", nfd)
    assert shown.exit_code == 0, shown.output  # "unknown dataset 'café'; the runs shown have: café"


def test_huge_values_are_compact(store):
    _, uri = store
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning on 1e308 - -1e308
        shown = _compare("--tracking-uri", uri, "-e", "odd", "--metric", "rmse")
    assert shown.exit_code == 0, shown.output
    line = next(line for line in shown.output.splitlines() if "wild" in line)
    assert "1e+308" in line and "-1e+308" in line and "-inf" in line and len(line) < 80, shown.output
    assert [compare.cell(v) for v in (0.61, 999.5, 12345.678, None, math.nan)] == [
        "0.6100", "999.5000", "1.23e+04", "—", "—"]
    assert compare.delta(0.61, 0.63) == "+0.0200" and compare.delta(1.0, math.nan) == "—"


def test_a_file_name_over_255_bytes_is_one_line(tmp_path):
    # OSError: [Errno 36] File name too long, as a traceback.
    text = _one_line_error(_compare("--tracking-uri", f"sqlite:///{tmp_path / ('a' * 300 + '.db')}"))
    assert "has a name longer than the file system allows (255 bytes a name" in text and "a" * 100 not in text


def test_render_keeps_a_model_that_is_nan_everywhere():
    runs = pd.DataFrame({"run_id": ["r1"], "run_name": ["one"], "start_time": [pd.Timestamp(0, unit="ms")],
                         "commit": [""], "params": [{}]})
    values = pd.DataFrame([("r1", "within", m, "d", "srcc", v) for m, v in (("a", 0.5), ("b", math.nan))],
                          columns=compare.VALUE_COLUMNS)
    table = compare.render(compare.Comparison(runs, values), values, 80)[-1]
    assert table.row_count == 2
