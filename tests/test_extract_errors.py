"""Stage `extract` on a file it cannot read: one line naming the stage, the model and the file; nothing written."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from iqabench import features, manifest
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path, models: list[str]) -> Path:
    """A workspace with params.yaml and a 3-image synthetic-single manifest made on the spot (no `dvc repro`)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"] = models
    params["mixed"]["model"] = models[0]  # validated against models:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = tmp_path / "data" / "prepared" / "synthetic-single"
    paths = []
    for k in range(3):
        paths.append(prepared / "images" / f"img{k}.png")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(paths[-1])
    frame = manifest.make("synthetic-single", paths, [10.0, 50.0, 90.0], score_type="MOS", lo=0, hi=100,
                          higher_is_better=True, score_source="test")
    manifest.write(frame, prepared / "manifest.csv")
    return prepared


def _extract(monkeypatch, workdir: Path) -> str:
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["extract.py", *dvc_args("extract", "synthetic-single")])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "stages" / "extract.py"), run_name="__main__")
    return str(stop.value)


def test_a_broken_image_stops_extract_in_one_line_naming_it(tmp_path, monkeypatch):
    prepared = _workspace(tmp_path, ["brisque"])
    broken = sorted((prepared / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    message = _extract(monkeypatch, tmp_path)
    assert message.startswith("error: extract@synthetic-single, model brisque:") and broken.name in message
    assert not (tmp_path / "data" / "features").exists()


def test_an_unreadable_model_file_stops_extract_in_one_line_naming_it(tmp_path, monkeypatch):
    weights = tmp_path / "mine.pt"
    weights.write_text("not a checkpoint")
    _workspace(tmp_path, [f"file:{weights}"])
    message = _extract(monkeypatch, tmp_path)
    assert message.startswith(f"error: extract@synthetic-single, model file:{weights}:") and "mine.pt" in message
    assert not (tmp_path / "data" / "features").exists()


def _images(tmp_path: Path, sizes) -> pd.DataFrame:
    paths = []
    for k, (h, w) in enumerate(sizes):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return pd.DataFrame({"image": paths})


def _fn(body):
    def fn(x):
        return body(x)
    fn.name = "py:mine:row"
    return fn


@pytest.mark.parametrize("body, says", [
    (lambda x: x.mean(dim=(1, 2, 3)), "shape (2,) for a batch of 2 images"),       # one number, not N x 1
    (lambda x: x.mean(dim=(2, 3))[:1], "shape (1, 3) for a batch of 2 images"),    # numpy would broadcast it
    (lambda x: x.mean(dim=(2, 3)).numpy(), "returned a ndarray"),
    (lambda x: x.flatten(1)[:, :x.shape[-1]], "32 features per image for one batch and 16 for another"),
])
def test_a_feature_function_with_the_wrong_output_is_named_not_stored(tmp_path, body, says):
    frame = _images(tmp_path, [(16, 16), (16, 16), (32, 32), (32, 32)])
    with pytest.raises(ValueError, match="row 'py:mine:row' returned") as err:
        features.extract(_fn(body), frame, batch_size=2, show_progress=False)
    assert says in str(err.value)


def test_a_well_formed_feature_function_passes_the_check(tmp_path):
    frame = _images(tmp_path, [(16, 16), (32, 32), (16, 16)])
    out = features.extract(_fn(lambda x: x.mean(dim=(2, 3))), frame, batch_size=2, show_progress=False)
    assert out.shape == (3, 3) and out.dtype == np.float32
    assert np.allclose(out[1], np.asarray(Image.open(frame["image"][1])).mean((0, 1)) / 255, atol=1e-3)


def test_the_features_file_reads_back_without_unpickling(tmp_path, monkeypatch):
    """The image names were a pickled object array: the file could not be read with allow_pickle=False."""
    _workspace(tmp_path, ["brisque"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["extract.py", *dvc_args("extract", "synthetic-single")])
    runpy.run_path(str(REPO / "stages" / "extract.py"), run_name="__main__")
    path = tmp_path / "data" / "features" / "synthetic-single.npz"
    with np.load(path, allow_pickle=False) as blob:
        assert blob["images"].dtype.kind == "U" and blob["images"].tolist() == ["img0.png", "img1.png", "img2.png"]
        brisque = blob["brisque"]
    stored = features.load_file(path)
    assert sorted(stored) == ["brisque", "images"] and brisque.shape[0] == 3
    assert np.array_equal(stored["brisque"], brisque, equal_nan=True)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left beside it
