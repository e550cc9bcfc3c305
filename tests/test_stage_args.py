"""A per-dataset stage run by hand without its DATASET (or with two): a usage line, not an IndexError."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", ["prepare", "extract"])
@pytest.mark.parametrize("args", [[], ["a", "b"]])
def test_a_per_dataset_stage_says_how_to_call_it(monkeypatch, tmp_path, stage, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    assert str(info.value).startswith(f"usage: python stages/{stage}.py DATASET ({stage}@DATASET ")
    assert f"got {args}" in str(info.value) and not list(tmp_path.iterdir())
