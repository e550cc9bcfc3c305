"""A stage run by hand with the wrong arguments says how to call it (argparse's usage line, exit status 2) and
writes nothing: a per-dataset stage without its DATASET (it was an IndexError traceback) or with two, and a
stage that takes none given one (`stages/evaluate.py --params other.yaml` silently read params.yaml)."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(monkeypatch, tmp_path, capsys, stage: str, args: list[str]) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    out, err = capsys.readouterr()
    assert not list(tmp_path.iterdir())  # nothing written
    return info.value.code, out, err


@pytest.mark.parametrize("stage", ["prepare", "extract"])
@pytest.mark.parametrize("args, problem", [([], "the following arguments are required: dataset"),
                                           (["a", "b"], "unrecognized arguments: b")])
def test_a_per_dataset_stage_says_how_to_call_it(monkeypatch, tmp_path, capsys, stage, args, problem):
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, args)
    assert code == 2 and f"usage: {stage}.py [-h] dataset" in err and problem in err


@pytest.mark.parametrize("stage", ["evaluate", "fit_niqe", "report", "synthesize", "fingerprint"])
def test_a_stage_without_arguments_refuses_one_and_helps(monkeypatch, tmp_path, capsys, stage):
    code, _, err = _run(monkeypatch, tmp_path, capsys, stage, ["--params", "other.yaml"])
    assert code == 2 and f"usage: {stage}.py [-h]" in err and "unrecognized arguments: --params other.yaml" in err
    code, out, _ = _run(monkeypatch, tmp_path, capsys, stage, ["--help"])  # it ran the whole stage before
    assert code == 0 and f"Stage `{stage}`" in out


def test_the_mixed_stage_takes_at_most_a_params_file(monkeypatch, tmp_path, capsys):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, "mixed", ["--help"])  # "--help" was read as a params file
    assert code == 0 and "usage: mixed.py [-h] [params]" in out
    code, _, err = _run(monkeypatch, tmp_path, capsys, "mixed", ["a.yaml", "b.yaml"])
    assert code == 2 and "unrecognized arguments: b.yaml" in err
