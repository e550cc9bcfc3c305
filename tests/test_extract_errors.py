"""Stage `extract` on a file it cannot read: one line naming the stage, the model and the file; nothing written."""
from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path, models: list[str]) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"] = models
    params["mixed"]["model"] = models[0]  # validated against models:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = tmp_path / "data" / "prepared" / "synthetic-single"
    (prepared / "images").mkdir(parents=True)
    source = REPO / "data" / "prepared" / "synthetic-single"
    lines = (source / "manifest.csv").read_text().splitlines()[:4]  # header and 3 images
    for line in lines[1:]:
        image = line.split(",")[1]
        shutil.copy(source / image, prepared / image)
    (prepared / "manifest.csv").write_text("\n".join(lines) + "\n")
    return prepared


def _extract(monkeypatch, workdir: Path) -> str:
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["extract.py", "synthetic-single"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "stages" / "extract.py"), run_name="__main__")
    return str(stop.value)


@pytest.mark.skipif(not (REPO / "data/prepared/synthetic-single/manifest.csv").is_file(),
                    reason="needs the embedded set (dvc repro prepare@synthetic-single)")
def test_a_broken_image_stops_extract_in_one_line_naming_it(tmp_path, monkeypatch):
    prepared = _workspace(tmp_path, ["brisque"])
    broken = sorted((prepared / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    message = _extract(monkeypatch, tmp_path)
    assert message.startswith("error: extract@synthetic-single, model brisque:") and broken.name in message
    assert not (tmp_path / "data" / "features").exists()


@pytest.mark.skipif(not (REPO / "data/prepared/synthetic-single/manifest.csv").is_file(),
                    reason="needs the embedded set (dvc repro prepare@synthetic-single)")
def test_an_unreadable_model_file_stops_extract_in_one_line_naming_it(tmp_path, monkeypatch):
    weights = tmp_path / "mine.pt"
    weights.write_text("not a checkpoint")
    _workspace(tmp_path, [f"file:{weights}"])
    message = _extract(monkeypatch, tmp_path)
    assert message.startswith(f"error: extract@synthetic-single, model file:{weights}:") and "mine.pt" in message
    assert not (tmp_path / "data" / "features").exists()
