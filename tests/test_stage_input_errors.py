"""Stages that read manifests and features files stop in one line on a bad cell or a damaged file, and write
nothing: a manifest `score` of `abc`, an empty manifest and a truncated `data/features/DS.npz` ended in tracebacks."""
from __future__ import annotations

import csv
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from iqabench import features
from stage_cmd import args as dvc_args
from test_extract_errors import REPO, _workspace

FEATURES = Path("data/features/synthetic-single.npz")


def _run(monkeypatch, workdir: Path, stage: str, item: str | None = None) -> str:
    """The stage run as dvc.yaml runs it (``item``: a per-dataset stage's DATASET)."""
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", [f"{stage}.py", *dvc_args(stage, item)])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    return str(stop.value.code)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _score_not_a_number(manifest_csv: Path) -> None:  # row 3 of the file (the second image): 'abc'
    with open(manifest_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[1]["score"] = "abc"
    with open(manifest_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("stage, item", [("extract", "synthetic-single"), ("evaluate", None), ("mixed", None),
                                         ("finetune", None)])
def test_a_manifest_cell_that_is_not_a_number_stops_the_stage_in_one_line(tmp_path, monkeypatch, stage, item):
    _score_not_a_number(_workspace(tmp_path, ["brisque"]) / "manifest.csv")
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, stage, item)
    name = "extract@synthetic-single" if stage == "extract" else stage
    assert message.startswith(f"error: {name}: data/prepared/synthetic-single/manifest.csv: 'score' is not a "
                              "finite number in row 3") and "'abc'" in message and "\n" not in message
    assert _files(tmp_path) == before


@pytest.mark.parametrize("damage, says", [
    (_score_not_a_number, "'score' is not a finite number in row 3"),
    (lambda p: p.write_bytes(b""), "not a readable CSV file (EmptyDataError: No columns to parse from file)")])
def test_a_damaged_manifest_stops_report_in_one_line_before_it_writes(tmp_path, monkeypatch, damage, says):
    # report read the manifests for MLflow after writing results.md and the figures, and a bad one was a traceback.
    manifest_csv = _workspace(tmp_path, ["brisque"]) / "manifest.csv"
    damage(manifest_csv)
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, "report")
    assert message.startswith(f"error: report: data/prepared/synthetic-single/manifest.csv: {says}")
    assert message.endswith(": `dvc checkout data/prepared/synthetic-single` or "
                            "`dvc repro -f prepare@synthetic-single`") and "\n" not in message
    assert _files(tmp_path) == before


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickled(path: Path) -> None:  # what extract wrote before: the image names as a pickled object array
    np.savez(path, images=np.array(["img0.png", "img1.png", "img2.png"], dtype=object), brisque=np.zeros((3, 4)))


@pytest.mark.parametrize("damage, reason", [(_truncated, "BadZipFile: not a zip archive of arrays"),
                                            (lambda p: p.write_text("not an npz"), "BadZipFile: not a zip"),
                                            (_pickled, "ValueError: Object arrays cannot be loaded")])
@pytest.mark.parametrize("stage", ["evaluate", "mixed"])
def test_a_damaged_features_file_stops_the_stage_in_one_line_naming_it(tmp_path, monkeypatch, stage, damage, reason):
    _workspace(tmp_path, ["brisque"])
    path = tmp_path / FEATURES
    features.save_file(path, ["img0.png", "img1.png", "img2.png"], {"brisque": np.ones((3, 4), np.float32)})
    damage(path)
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, stage)
    assert message.startswith(f"error: {stage}: {FEATURES} is unreadable ({reason}") and "\n" not in message
    assert message.endswith(f": `dvc checkout {FEATURES}` or `dvc repro -f extract@synthetic-single`")
    assert _files(tmp_path) == before


def test_a_missing_features_file_says_which_stage_makes_it(tmp_path):
    with pytest.raises(features.FeaturesFileError, match=r"gone\.npz does not exist: no features for dataset "
                                                         r"'gone'; run `dvc repro extract@gone`"):
        features.load_file(tmp_path / "gone.npz")


def _report_inputs(tmp_path: Path) -> None:
    """Every table report reads, with the columns it needs and no rows (enough to get past reading)."""
    sys.path.insert(0, str(REPO / "stages"))
    try:
        import report
    finally:
        sys.path.remove(str(REPO / "stages"))
    for path, columns, _ in report.input_tables(report.parse_args(dvc_args("report"))).values():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(",".join(columns or ["x"]) + "\n")
    (tmp_path / "reports/metrics.json").write_text('{"within": {}, "cross": {}}')
    for name in ("finetune", "mixed"):
        (tmp_path / f"reports/{name}.md").write_text(f"# {name}\n")


@pytest.mark.parametrize("path, damage, says", [
    ("reports/within.csv", lambda p: p.unlink(), "reports/within.csv is missing"),
    ("reports/within.csv", lambda p: p.write_bytes(b"\xff\xfe\x00garbage\n\x00\x01"), "reports/within.csv is not a "
                                                                                       "readable CSV table"),
    ("reports/within.csv", lambda p: p.write_text("model,dataset\nbrisque,x\n"), "reports/within.csv lacks the "
                                                                                   "column(s) n_images, srcc"),
    ("data/eval/predictions.csv", lambda p: p.write_text(""), "data/eval/predictions.csv is not a readable CSV"),
    ("reports/metrics.json", lambda p: p.write_text("{"), "reports/metrics.json is not valid JSON"),
    ("reports/metrics.json", lambda p: p.write_text("[]"), "reports/metrics.json lacks its 'within' and 'cross'"),
    ("reports/mixed.md", lambda p: p.unlink(), "reports/mixed.md is missing; `dvc repro -f mixed`"),
])
def test_a_damaged_input_of_report_stops_it_in_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch, path,
                                                                                      damage, says):
    # Each was a pandas or json traceback, some after results.md and the figures were written.
    _workspace(tmp_path, ["brisque"])
    _report_inputs(tmp_path)
    damage(tmp_path / path)
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, "report")
    assert message.startswith(f"error: report: {says}") and "\n" not in message, message
    assert "`dvc" in message
    assert _files(tmp_path) == before


def test_finetune_refuses_a_published_arniqa_file_before_any_split(tmp_path, monkeypatch):
    # Fine-tuning reads images as CONTRIQUE does; ARNIQA's own file would train on inputs unlike its authors'.
    import torch
    from torch import nn
    from torchvision import models as tvm

    _workspace(tmp_path, ["brisque"])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["finetune"]["model"] = "file:weights/ARNIQA.pth"
    params["datasets"] = ["synthetic-single"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    trunk = nn.Sequential(*list(tvm.resnet18(weights=None).children())[:-1])  # models/resnet.py's `model`
    state = {f"model.{k}": v for k, v in trunk.state_dict().items()} | {"projector.0.weight": torch.zeros(8, 512)}
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / "ARNIQA.pth")
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, "finetune")
    assert message.startswith("error: finetune: weights/ARNIQA.pth is ARNIQA's published checkpoint")
    assert "arniqa-published" in message and "\n" not in message
    assert _files(tmp_path) == before
