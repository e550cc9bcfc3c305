"""`iqabench score` with bad input: one clear line naming the file, model or limit, and no traceback."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from iqabench import images, io, regressor, scoring
from iqabench.cli import app
from iqabench.models import encoders, preprocessing


def _png_header_only(path, width, height):
    """A PNG that declares width x height (Pillow checks the size when it opens the file, before decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def row(tmp_path):
    torch.manual_seed(0)
    encoder = tmp_path / "enc.pt"
    encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), encoder)
    model = f"file:{encoder}"
    train = np.random.default_rng(0).uniform(size=(20, 3, 48, 48)).astype(np.float32)
    feats = preprocessing.pooled_features(encoders.load(encoder), torch.from_numpy(train)).numpy()
    regressor.fit(feats, np.linspace(0, 1, 20), alpha=0.1, standardize=False, dataset="d").save(
        regressor.path_for(model, tmp_path / "regressors"))
    return model, tmp_path / "regressors"


def _score(*args):
    result = CliRunner().invoke(app, ["score", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_one_pixel_image_states_the_minimum_size(row, tmp_path):
    model, regressors = row
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    code, out = _score(tmp_path / "dot.png", "--model", model, "--regressors", regressors)
    assert code == 1 and f"dot.png: 1 x 1 px is too small to score; images need at least {images.MIN_SIDE}" in out


def test_decompression_bomb_names_the_file_the_limit_and_how_to_raise_it(row, tmp_path):
    model, regressors = row
    bomb = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    code, out = _score(bomb, "--model", model, "--regressors", regressors)
    assert code == 1 and "huge.png: too large to decode safely" in out and "400000000 pixels" in out
    assert images.MAX_PIXELS_ENV in out and "Traceback" not in out
    report = images.check_images([bomb], progress=False)  # registration lists it instead of crashing
    assert report.unreadable and "too large" in report.unreadable[0][1]


def test_the_limit_can_be_raised_with_the_environment_variable(tmp_path):
    bomb = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    code = ("import sys; from PIL import Image; from iqabench import images;"
            "Image.open(sys.argv[1]).close(); print(Image.MAX_IMAGE_PIXELS)")
    env = {**os.environ, images.MAX_PIXELS_ENV: str(500_000_000)}
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unknown_model_lists_the_known_rows(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    code, out = _score(tmp_path / "p.png", "--model", "nonexistent")
    assert code == 1 and "unknown row 'nonexistent'; choose from" in out and "contrique" in out
    assert ".npz" not in out


def test_missing_model_file_says_no_such_file(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    code, out = _score(tmp_path / "p.png", "--model", f"file:{tmp_path}/missing.pt")
    assert code == 1 and f"no such file {tmp_path}/missing.pt" in out and ".npz" not in out


def test_model_without_a_regressor_says_how_to_fit_one(row, tmp_path):
    _, regressors = row
    other = tmp_path / "other.pt"
    encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), other)
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    code, out = _score(tmp_path / "p.png", "--model", f"file:{other}", "--regressors", regressors)
    assert code == 1 and "does not exist; run `dvc repro evaluate`" in out and "add it there first" in out


def test_a_regressors_folder_without_any_regressor_is_named_as_such(row, tmp_path):
    # It advised `dvc repro evaluate`, which writes to the repository's folder, not the one given.
    model, _ = row
    (tmp_path / "empty").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    code, out = _score(tmp_path / "p.png", "--model", model, "--regressors", tmp_path / "empty")
    assert code == 1 and f"--regressors {tmp_path / 'empty'} holds no fitted regressor (no .npz file" in " ".join(
        out.split()) and "dvc repro evaluate` writes them to" in " ".join(out.split())


def test_a_row_undefined_on_one_image_names_it_instead_of_printing_nan(tmp_path):
    # BRISQUE has no statistics on a flat image (the features contract gives NaN there): say so, never "nan".
    feats = np.random.default_rng(0).normal(size=(20, 36))
    regressor.fit(feats, np.linspace(0, 1, 20), alpha=0.1, standardize=False, dataset="d").save(
        regressor.path_for("brisque", tmp_path / "regressors"))
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "textured.png")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "flat.png")
    code, out = _score(tmp_path / "textured.png", tmp_path / "flat.png", "--model", "brisque",
                       "--regressors", tmp_path / "regressors")
    assert code == 1 and "brisque is undefined on 1 image(s)" in out and "flat.png" in out and "nan" not in out.lower().split()
    # The other images are still rated (nothing was printed for any of them); the undefined one has no value.
    assert re.search(rf"{re.escape(str(tmp_path / 'textured.png'))},64,64,-?\d", out)
    assert f"{tmp_path / 'flat.png'},64,64, " in out  # out is whitespace-joined: the empty cell ends the line


def test_a_folder_is_not_called_missing(row, tmp_path):
    model, regressors = row
    (tmp_path / "photos").mkdir()
    code, out = _score(tmp_path / "photos", "--model", model, "--regressors", regressors)
    assert code == 1 and f"{tmp_path / 'photos'}: is a folder, not an image; pass the image files in it" in out


def test_a_prediction_outside_0_100_is_kept_and_said(row, tmp_path):
    model, regressors = row
    fitted = regressor.load(regressor.path_for(model, regressors))
    # The same regressor shifted up by 2 (200 on the 0-100 scale): what a very unusual image gets.
    regressor.Regressor(fitted.coef, fitted.intercept + 2.0, fitted.mean, fitted.scale, fitted.alpha, "d").save(
        regressor.path_for(model, regressors))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    with pytest.warns(UserWarning, match=r"1 image\(s\) scored outside 0-100 \(e.g. .*p.png: 2\d\d.*\): the regressor "
                                         r"was fitted on d's scores and extrapolates"):
        frame = scoring.score_images([tmp_path / "p.png"], model, regressors)
    assert frame["quality"].iloc[0] > 100  # reported as predicted, not clipped


def test_the_size_warning_below_the_limit_names_the_file(monkeypatch, tmp_path):
    # Between half the limit and the limit Pillow only warns, and its warning named no file.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / "big.png")  # 1600 pixels: warned, not refused
    with pytest.warns(UserWarning, match=r"big.png: Image size \(1600 pixels\) exceeds limit of 1000 pixels.* "
                                         f"decoded all the same; .*{images.MAX_PIXELS_ENV}=PIXELS"):
        image = images.load(tmp_path / "big.png")
    assert image.shape == (3, 40, 40) and image[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]
    with pytest.warns(UserWarning, match=r"big.png: Image size"):
        assert not images.check_images([tmp_path / "big.png"], progress=False).unreadable


def test_a_floating_point_image_is_refused_not_turned_black(row, tmp_path):
    # Pillow's convert("RGB") clips mode 'F' pixels to 0-255, so an image stored in [0, 1] was scored as black.
    model, regressors = row
    values = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    Image.fromarray(values, "F").save(tmp_path / "float.tif")
    code, out = _score(tmp_path / "float.tif", "--model", model, "--regressors", regressors)
    assert code == 1 and "float.tif: not a readable image (its pixels are 32-bit floating point (mode 'F')" in out
    report = images.check_images([tmp_path / "float.tif"], progress=False)
    assert report.unreadable and "save it as an 8- or 16-bit image" in report.unreadable[0][1]


@pytest.mark.parametrize("content", [b"junk\n", b"PK\x03\x04truncated"])
def test_a_damaged_regressor_file_is_named_without_numpys_pickle_hint(row, tmp_path, content):
    model, regressors = row
    regressor.path_for(model, regressors).write_bytes(content)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    code, out = _score(tmp_path / "p.png", "--model", model, "--regressors", regressors)
    assert code == 1 and "npz: not a regressor file iqabench wrote" in out and "dvc repro evaluate" in out
    assert "pickle" not in out


def _animated_gif(path, frames=3):
    colours = [Image.new("RGB", (40, 40), (60 * k, 0, 0)) for k in range(frames)]
    colours[0].save(path, save_all=True, append_images=colours[1:], duration=100, loop=0)
    return path


def test_an_animated_gif_says_which_frame_is_read(tmp_path):
    # It was scored on its first frame without a word.
    with pytest.warns(UserWarning, match=r"anim.gif: animated: frame 1 of 3 used"):
        image = images.load(_animated_gif(tmp_path / "anim.gif"))
    assert image[0].max() == 0  # the first frame (black), not a later red one


def test_a_multi_page_tiff_says_page_and_an_empty_file_says_empty(tmp_path):
    pages = [Image.new("RGB", (40, 40), colour) for colour in ("black", "red", "blue")]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    with pytest.warns(UserWarning, match=r"scan.tif: multi-page: page 1 of 3 used"):  # not "animated"
        assert images.load(tmp_path / "scan.tif")[0].max() == 0
    (tmp_path / "empty.png").touch()  # Pillow's "cannot identify image file" hid that nothing is there
    with pytest.raises(images.ImageError, match=r"empty.png: is empty \(0 bytes\); copy it again or remove it"):
        images.load(tmp_path / "empty.png")
    report = images.check_images([tmp_path / "empty.png"], progress=False)
    assert report.unreadable == [(str(tmp_path / "empty.png"), "empty (0 bytes)")]


def test_score_says_it_once_per_file(row, tmp_path):
    model, regressors = row
    gif = _animated_gif(tmp_path / "anim.gif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning counted, not only the first one from each line
        scoring.score_images([gif], model, regressors)
    assert [str(w.message) for w in caught].count(f"{gif}: animated: frame 1 of 3 used") == 1


def _sideways_jpeg(path):
    """A 64 x 40 px JPEG stored sideways with EXIF orientation 6 (a phone's portrait shot): 40 x 64 as displayed."""
    pixels = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    return path


def test_a_datasets_image_is_read_as_stored_and_a_users_photo_as_displayed(tmp_path):
    jpeg = _sideways_jpeg(tmp_path / "phone.jpg")
    stored = images.load(jpeg)  # the pipeline's reading: as pyiqa and the authors' loaders read datasets
    with Image.open(jpeg) as raw:
        assert torch.equal(stored, images.from_uint8(np.asarray(raw.convert("RGB"))))
    displayed = images.load(jpeg, exif_transpose=True)
    assert tuple(stored.shape[1:]) == (40, 64) and tuple(displayed.shape[1:]) == (64, 40)
    assert torch.equal(displayed, stored.transpose(1, 2).flip(2))  # orientation 6: turned 90 degrees clockwise


def test_score_reads_a_phone_photo_upright_and_reports_its_displayed_size(row, tmp_path):
    model, regressors = row
    jpeg = _sideways_jpeg(tmp_path / "phone.jpg")
    with Image.open(jpeg) as raw:  # the same pixels, upright, in a file without EXIF
        Image.fromarray(np.asarray(raw.convert("RGB")).transpose(1, 0, 2)[:, ::-1]).save(tmp_path / "upright.png")
    code, out = _score(jpeg, tmp_path / "upright.png", "--model", model, "--regressors", regressors)
    assert code == 0, out
    lines = dict(line.split(",", 1) for line in out.split()[1:])
    (_, jpeg_row), (_, png_row) = sorted(lines.items())
    assert jpeg_row.startswith("40,64,") and jpeg_row == png_row  # width, height as displayed; the same score


def test_every_image_a_row_refuses_is_named_not_only_the_first():
    # `score --model niqe a.png b.png c.png`, all under 96 px, named a.png only: the user fixed it and met b.png.
    import pandas as pd
    import torch

    from iqabench import scoring

    def small_refused(x):
        if x.shape[-1] < 64:
            raise ValueError("images are too small")
        return x.mean(dim=(2, 3))
    sizes = {"a.png": 32, "big.png": 80, "b.png": 40, "c.png": 48}
    frame = pd.DataFrame({"image": list(sizes)})
    with pytest.raises(ValueError, match=r"too small\nfailing image\(s\): a.png, b.png, c.png$"):
        scoring._extract_naming_all(small_refused, frame, lambda name: torch.zeros(3, sizes[name], sizes[name]))
    frame = pd.DataFrame({"image": ["big.png", "a.png"]})
    with pytest.raises(ValueError, match=r"failing image\(s\): a.png$"):  # one: the extractor's words (not ['a.png'])
        scoring._extract_naming_all(small_refused, frame, lambda name: torch.zeros(3, sizes[name], sizes[name]))


def test_a_name_no_file_system_allows_or_a_link_loop_is_one_line(tmp_path):
    # Path.is_dir() raised OSError (ENAMETOOLONG, ELOOP) as a traceback.
    long_name = tmp_path / ("a" * 300 + ".png")
    with pytest.raises(images.ImageError, match=r"a+\.\.\. \(\d+ bytes\): File name too long; check"):
        images.load(long_name)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(images.ImageError, match="loop.png: Too many levels of symbolic links; check the file name"):
        images.load(loop)


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux; other systems refuse this one")
def test_a_file_name_that_is_not_utf8_is_printed_as_its_bytes(row, tmp_path):
    # The whole output was lost: "'utf-8' codec can't encode character '\udcff' ...: surrogates not allowed".
    model, regressors = row
    Image.new("RGB", (64, 64), "grey").save(tmp_path / "good.png")
    odd = os.fsencode(tmp_path) + b"/bad\xff.png"
    Image.new("RGB", (64, 64), "white").save(odd.decode("utf-8", "surrogateescape"))
    out = subprocess.run([sys.executable, "-c", "from iqabench.cli import app; app()", "score", "--model", model,
                          "--regressors", str(regressors), odd, str(tmp_path / "good.png")],
                         capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert b"bad\xff.png," in out.stdout and b"good.png," in out.stdout


def _bad_files(tmp_path, count):
    """``count`` files that cannot be scored, each in its own way, in turn: too small, not an image, absent, empty."""
    made = []
    for k in range(count):
        path = tmp_path / f"bad{k:02d}.{('png', 'heic', 'jpg', 'png')[k % 4]}"
        if k % 4 == 0:
            Image.new("RGB", (20, 20)).save(path)
        elif k % 4 == 1:
            path.write_bytes(b"\x00\x00\x00\x18ftypheic not decodable here")
        elif k % 4 == 3:
            path.touch()
        made.append(path)
    return made


def test_every_unreadable_or_too_small_file_is_named_at_once_and_none_is_scored(row, tmp_path):
    # `score ~/Pictures/*` named the first bad file only: the user fixed one per run.
    model, regressors = row
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(good)
    tiny, heic, absent, empty = _bad_files(tmp_path, 4)
    result = CliRunner().invoke(app, ["score", str(good), str(tiny), str(heic), str(good), str(absent), str(empty),
                                      "--model", model, "--regressors", str(regressors)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines() == [
        "error: 4 of 5 files cannot be scored (unreadable or too small), so none was; fix them or leave them out:",
        f"  {tiny}: 20 x 20 px is too small to score; images need at least {images.MIN_SIDE} x {images.MIN_SIDE} px",
        *[line for line in result.output.splitlines() if line.startswith(f"  {heic}: not a readable image (")],
        f"  {absent}: no such image file",
        f"  {empty}: is empty (0 bytes); copy it again or remove it"]
    assert "good.png" not in result.output  # no score printed: all or nothing, as before


def test_many_bad_files_are_counted_past_the_first_few(row, tmp_path):
    model, regressors = row
    bad = _bad_files(tmp_path, io.MAX_LISTED + 3)
    with pytest.raises(images.ImageError) as err:
        scoring.score_images(bad, model, regressors)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{len(bad)} of {len(bad)} files cannot be scored")
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == [str(p) for p in bad[:io.MAX_LISTED]]
    assert lines[-1] == "  ... and 3 more"


def test_niqe_leaves_images_under_its_patch_unscored_and_scores_the_others(tmp_path):
    # They stopped `score --model niqe` (and `extract`): "need at least 96x96; upscale or skip images this small".
    from iqabench import baselines
    from iqabench.models.niqe import NiqeModel

    (tmp_path / "params.yaml").write_text("{}\n")  # a repository: the niqe row reads its model there
    NiqeModel(mean=np.zeros(36), covariance=np.eye(36), patch_size=96, sharpness_threshold=0.75,
              num_patches=2).save(tmp_path / baselines.NIQE_MODEL)
    regressor.fit(np.linspace(-30, -10, 20)[:, None], np.linspace(0, 1, 20), alpha=0.1, standardize=False,
                  dataset="d").save(regressor.path_for("niqe", tmp_path / "regressors"))
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, size=(100, 120, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    frame = scoring.score_images([tmp_path / "big.png", tmp_path / "small.png"], "niqe", tmp_path / "regressors")
    assert np.isfinite(frame["quality"][0]) and np.isnan(frame["quality"][1])
    assert frame.attrs["not_scored"].startswith(f"niqe is undefined on 1 image(s) ({tmp_path / 'small.png'}): ")
    assert "NIQE on one smaller than its patch, 96 x 96 px by default" in frame.attrs["not_scored"]
