"""A stage run by hand with missing or wrong arguments says how to call it (argparse's usage line, exit status 2)
and writes nothing: without the paths dvc.yaml gives it (every file a stage reads or writes is a required
option), a per-dataset stage without its DATASET (it was an IndexError traceback) or with two, a stray argument
(`stages/evaluate.py --params other.yaml` silently read params.yaml) and an empty path (an unset shell variable)."""
from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest

from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]
STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py"))
ITEM = {"download": "kadid10k", "prepare": "synthetic-single", "extract": "synthetic-single", "pretrain": "contrique"}
USAGE = {  # argparse's usage line (whitespace folded: it wraps at the terminal's width)
    "download": "download.py [-h] --data-root DIR --lock FILE [--retries RETRIES] [--keep-archives] name",
    "fingerprint": "fingerprint.py [-h] --out DIR",
    "prepare": "prepare.py [-h] --out DIR dataset",
    "synthesize": "synthesize.py [-h] --corpus DIR --gallery PNG",
    "pretrain": "pretrain.py [-h] --corpus DIR --out PT --history CSV --checkpoints DIR [--profile PROFILE] "
                "[--nproc NPROC] name",
    "fit_niqe": "fit_niqe.py [-h] --out NPZ",
    "extract": "extract.py [-h] --prepared DIR --out NPZ dataset",
    "evaluate": "evaluate.py [-h] --prepared DIR --features DIR --eval DIR --regressors DIR --within CSV --cross CSV "
                "--significance CSV --metrics JSON",
    "finetune": "finetune.py [-h] --prepared DIR --per-split CSV --checkpoints DIR --csv CSV --md MD "
                "[--params YAML]",
    "mixed": "mixed.py [-h] --features DIR --prepared DIR --within CSV --csv CSV --md MD [--params YAML]",
    "report": "report.py [-h] [--params YAML] --lock FILE --prepared DIR --eval DIR --within CSV --cross CSV "
              "--significance CSV --metrics JSON --finetune-csv CSV --finetune-md MD --mixed-csv CSV --mixed-md MD "
              "--variance CSV --gallery PNG --results MD --srcc-png PNG --cross-png PNG --scatter-png PNG "
              "--loss-png PNG --plots DIR",
}


def _run(monkeypatch, tmp_path, capsys, stage: str, args: list[str]) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    out, err = capsys.readouterr()
    assert not list(tmp_path.iterdir())  # nothing written
    return info.value.code, " ".join(out.split()), " ".join(err.split())


def test_every_stage_has_its_usage_line_here():
    assert sorted(USAGE) == STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_without_the_paths_dvc_yaml_gives_it_prints_its_usage_and_writes_nothing(monkeypatch, tmp_path,
                                                                                           capsys, stage):
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, [])
    assert code == 2 and f"usage: {USAGE[stage]}" in err and "the following arguments are required: " in err


@pytest.mark.parametrize("stage", ["prepare", "extract"])
def test_a_per_dataset_stage_says_how_to_call_it(monkeypatch, tmp_path, capsys, stage):
    paths = dvc_args(stage, ITEM[stage])[1:]  # dvc.yaml's options, without the DATASET
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, paths)
    assert code == 2 and f"usage: {USAGE[stage]}" in err and "the following arguments are required: dataset" in err
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, ["a", "b", *paths])
    assert code == 2 and f"usage: {USAGE[stage]}" in err and "unrecognized arguments: b" in err


@pytest.mark.parametrize("stage", sorted(set(STAGES) - {"finetune", "mixed", "report"}))  # those take a params file
def test_a_stage_refuses_a_stray_argument_and_helps(monkeypatch, tmp_path, capsys, stage):
    args = dvc_args(stage, ITEM.get(stage))
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, [*args, "--params", "other.yaml"])
    assert code == 2 and f"usage: {USAGE[stage]}" in err and "unrecognized arguments: --params other.yaml" in err


@pytest.mark.parametrize("stage", STAGES)
def test_help_shows_the_docstring_without_running_the_stage(monkeypatch, tmp_path, capsys, stage):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, stage, ["--help"])  # it ran the whole stage before
    first = ast.get_docstring(ast.parse((REPO / "stages" / f"{stage}.py").read_text())).splitlines()[0]
    assert code == 0 and f"usage: {USAGE[stage]}" in out and " ".join(first.split()) in out


@pytest.mark.parametrize("stage", ["finetune", "mixed", "report"])
def test_a_stage_that_takes_a_params_file_takes_one_as_params(monkeypatch, tmp_path, capsys, stage):
    """One way for the three (mixed took it as a positional, report required it): an optional --params YAML."""
    args = [a for a in dvc_args(stage) if a != "--params" and a != "params.yaml"]  # report's cmd names it
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, [*args, "--params", "a.yaml", "b.yaml"])
    assert code == 2 and f"usage: {USAGE[stage]}" in err and "unrecognized arguments: b.yaml" in err


@pytest.mark.parametrize("value, says", [("", "argument --out: '' is empty (an unset shell variable?)"),
                                         (".", "--out . holds the working folder, which the stage empties first")])
def test_prepare_refuses_an_out_that_would_empty_the_working_folder(monkeypatch, tmp_path, capsys, value, says):
    code, _, err = _run(monkeypatch, tmp_path, capsys, "prepare", ["synthetic-single", "--out", value])
    assert code == 2 and says in err


@pytest.mark.parametrize("stage, option, value", [("extract", "--out", "afile/x.npz"),  # a write
                                                  ("extract", "--prepared", "afile/synthetic-single"),  # a read
                                                  ("prepare", "--out", "afile/deeper/synthetic-single"),
                                                  ("evaluate", "--metrics", "afile/metrics.json")])
def test_a_path_under_a_file_is_refused_before_the_stage_works(monkeypatch, tmp_path, capsys, stage, option, value):
    """extract computed every feature (hours on a real set), then died on a FileExistsError traceback."""
    (tmp_path / "afile").write_text("a file")
    args = dvc_args(stage, ITEM.get(stage))
    args[args.index(option) + 1] = value
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2 and f"usage: {USAGE[stage]}" in err
    assert f"argument {option}: afile is a file, so {value} cannot be reached under it" in err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and (tmp_path / "afile").read_text() == "a file"
