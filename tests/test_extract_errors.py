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

from iqabench import baselines, features, images, manifest, rows
from iqabench.models.niqe import NiqeModel, niqe_score
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path, models: list[str], sizes=((48, 48),) * 3, references: bool = False) -> Path:
    """A workspace with params.yaml and a synthetic-single manifest of one image per size (HxW) made on the spot
    (no `dvc repro`); with ``references`` each image has its own reference, ref{k}.png (a noisier copy)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"] = models
    params["mixed"]["model"] = models[0]  # validated against models:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = tmp_path / "data" / "prepared" / "synthetic-single"
    paths, refs = [], []
    for k, (h, w) in enumerate(sizes):
        paths.append(prepared / "images" / f"img{k}.png")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(paths[-1])
        refs.append(prepared / "images" / f"ref{k}.png")
        Image.fromarray((pixels // 2 + 60).astype(np.uint8)).save(refs[-1])
    scores = np.linspace(10.0, 90.0, len(paths)).tolist()
    frame = manifest.make("synthetic-single", paths, scores, score_type="MOS", lo=0, hi=100,
                          higher_is_better=True, score_source="test",
                          reference=[str(r) for r in refs] if references else "")
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


def _niqe_model(tmp_path: Path) -> NiqeModel:
    """A pristine model at NIQE's default patch size where the `niqe` row reads it (no fit_niqe stage)."""
    model = NiqeModel(mean=np.zeros(36), covariance=np.eye(36), patch_size=96, sharpness_threshold=0.75,
                      num_patches=2)
    model.save(tmp_path / baselines.NIQE_MODEL)
    return model


def test_niqe_is_nan_on_exactly_the_images_smaller_than_its_patch_and_extract_goes_on(tmp_path, monkeypatch,
                                                                                      capsys):
    # One 64 px image (registration allows 32) stopped the whole stage: "need at least 96x96; ... skip images
    # this small", which nothing could do. Like BRISQUE on a flat image it is NaN there, reported and counted.
    model = _niqe_model(tmp_path)
    prepared = _workspace(tmp_path, ["niqe"], sizes=[(100, 128), (64, 64), (120, 96), (40, 200), (100, 128)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["extract.py", *dvc_args("extract", "synthetic-single")])
    runpy.run_path(str(REPO / "stages" / "extract.py"), run_name="__main__")
    assert ("synthetic-single: niqe is undefined on 2 image(s), kept as NaN and counted as missing by evaluate: "
            "img1.png, img3.png") in capsys.readouterr().out
    stored = features.load_file(tmp_path / "data" / "features" / "synthetic-single.npz")["niqe"]
    assert features.undefined_images(stored).tolist() == [False, True, False, True, False]
    # The images NIQE is defined on get exactly what they got before (DVC hashes the file): -NIQE, float32.
    for k in (0, 2, 4):
        alone = -niqe_score(images.load(prepared / "images" / f"img{k}.png")[None], model)
        assert stored[k].tobytes() == alone.numpy().astype(np.float32).tobytes()


def test_niqe_under_its_patch_on_every_image_says_why(tmp_path):
    frame = _images(tmp_path, [(64, 64), (40, 200)])
    fn = baselines.niqe(NiqeModel(mean=np.zeros(36), covariance=np.eye(36), patch_size=96,
                                  sharpness_threshold=0.75, num_patches=2))()
    with pytest.raises(ValueError) as err:
        features.extract(fn, frame, description="niqe on d", show_progress=False)
    assert str(err.value) == (f"niqe on d: the features are undefined (NaN) on every one of the 2 images (e.g. "
                              f"{frame['image'][0]}): NIQE: images are 64x64 (HxW) but need at least 96x96 (one 96 "
                              "px patch), so NIQE is undefined on them; choose another row for them")


def test_undefined_images_in_a_batch_are_told_apart_from_the_others(tmp_path):
    # A function may raise UndefinedImagesError for a batch holding only some such images: each is tried alone.
    def fn(x):
        if (x.mean(dim=(1, 2, 3)) > 0.6).any():
            raise features.UndefinedImagesError("too bright")
        return x.mean(dim=(2, 3))
    frame = _images(tmp_path, [(16, 16)] * 4)
    Image.new("RGB", (16, 16), "white").save(frame["image"][2])
    out = features.extract(fn, frame, batch_size=4, show_progress=False)
    assert features.undefined_images(out).tolist() == [False, False, True, False]
    assert np.isnan(out[2]).all() and np.isfinite(out[[0, 1, 3]]).all()


def test_a_refused_batch_names_its_files_comma_joined(tmp_path):
    frame = _images(tmp_path, [(16, 16), (16, 16)])

    def fn(x):
        raise ValueError("no")
    with pytest.raises(ValueError, match=r"^d: no\nfailing image\(s\): (\S+), (\S+)$") as err:
        features.extract(fn, frame, batch_size=2, description="d", show_progress=False)
    assert "[" not in str(err.value) and frame["image"][1] in str(err.value)  # not a Python list's repr


def test_a_missing_reference_file_skips_the_full_reference_row_and_the_others_run(tmp_path, monkeypatch, capsys):
    # A copy of a dataset without some reference images stopped extract at the first one, after the other rows.
    prepared = _workspace(tmp_path, ["brisque", "fr:psnr"], sizes=[(48, 48)] * 4, references=True)
    for k in (1, 3):
        (prepared / "images" / f"ref{k}.png").unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["extract.py", *dvc_args("extract", "synthetic-single")])
    runpy.run_path(str(REPO / "stages" / "extract.py"), run_name="__main__")
    missing = prepared.resolve() / "images" / "ref1.png"
    assert (f"synthetic-single: no fr:psnr row (fr:psnr needs each image's reference; 2 of 4 reference file(s) that "
            f"synthetic-single's manifest names do not exist (e.g. {missing}), for 2 of 4 images; the other rows "
            "run; put the reference images back to have this one)") in capsys.readouterr().out
    stored = features.load_file(tmp_path / "data" / "features" / "synthetic-single.npz")
    assert sorted(stored) == ["brisque", "images"] and stored["brisque"].shape == (4, 36)


def test_missing_references_are_found_before_any_image_is_read(tmp_path):
    prepared = _workspace(tmp_path, ["brisque"], sizes=[(48, 48)] * 3, references=True)
    frame = manifest.read(prepared / "manifest.csv")
    read = []

    def load(path):
        read.append(path)
        return images.load(path)
    fn = rows.feature_fn("fr:psnr")
    values = features.extract(fn, frame, load=load, show_progress=False)  # every reference there: as before
    assert values.shape == (3, 1) and np.isfinite(values).all() and len(read) == 3
    (prepared / "images" / "ref2.png").unlink()
    read.clear()
    with pytest.raises(features.MissingReferenceError, match=r"1 of 3 reference file\(s\) .* \(e.g. .*ref2.png\), "
                                                             r"for 1 of 3 images"):
        features.extract(fn, frame, load=load, show_progress=False)
    assert read == []
