"""More hostile input to `iqabench score` and the rows it builds: one line naming the value and what to do."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from iqabench import images, rows
from iqabench.cli import app


@pytest.mark.parametrize("raw, limit", [("400000000", 200_000_000), (" 4e8 ", 200_000_000),
                                        ("400,000,000", 200_000_000), ("400_000_000", 200_000_000)])
def test_a_pixel_count_sets_pillows_limit_to_half(raw, limit):
    assert images._pixel_limit(raw) == (limit, None)


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "1", "inf", "nan", "4OO000000"])
def test_a_value_that_is_no_pixel_count_is_named(raw):
    limit, problem = images._pixel_limit(raw)
    assert limit is None
    assert f"{images.MAX_PIXELS_ENV}={raw!r} is not a pixel count, so Pillow's own limit applies" in problem
    assert "unset it" in problem


def test_a_bad_value_does_not_break_importing(tmp_path):
    """It was a ValueError traceback from `import iqabench.images` in every command and stage; now a warning."""
    path = tmp_path / "ok.png"
    Image.new("RGB", (40, 40), "grey").save(path)
    code = "import sys; from iqabench import images; print(tuple(images.load(sys.argv[1]).shape))"
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, images.MAX_PIXELS_ENV: "abc"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(3, 40, 40)" and "Traceback" not in run.stderr
    assert f"{images.MAX_PIXELS_ENV}='abc' is not a pixel count" in run.stderr


def test_the_refusal_says_the_variable_was_not_used(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "PIXEL_LIMIT_PROBLEM", "the environment variable X='abc' is not a pixel count")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    images._warn_pixel_limit_problem.cache_clear()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(images.ImageError) as info:
        warnings.simplefilter("always")
        images.load(path)
    assert "too large to decode safely" in str(info.value) and "X='abc' is not a pixel count" in str(info.value)
    assert [str(w.message) for w in caught] == ["the environment variable X='abc' is not a pixel count"]
    images._warn_pixel_limit_problem.cache_clear()


@pytest.mark.parametrize("model, shown", [("file:", "."), ("file:{tmp}", "{tmp}")])
def test_a_folder_as_the_weights_file_is_called_a_folder(tmp_path, model, shown):
    image = tmp_path / "ok.png"
    Image.new("RGB", (40, 40), "grey").save(image)
    model = model.format(tmp=tmp_path)
    result = CliRunner().invoke(app, ["score", "--model", model, str(image)])
    assert result.exit_code == 1
    assert f"{model}: {shown.format(tmp=tmp_path)} is a folder, not a weights file; give the file's path" in result.output
    assert "no such file" not in result.output


def test_a_factory_that_needs_arguments_is_named_not_called():
    with pytest.raises(ValueError, match=r"py:os:system: system cannot be called without arguments .*a row factory "
                                         r"takes none and returns an iqabench.rows.Row"):
        rows.get("py:os:system")
    with pytest.raises(ValueError, match="expected an iqabench.rows.Row, got float"):
        rows.get("py:math:pi")


def _int32_tif(path, high):
    values = np.linspace(0, high, 48 * 48).reshape(48, 48).astype(np.int32)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I"
    return path


def test_32_bit_integer_pixels_beyond_16_bits_are_refused_not_clipped_white(tmp_path):
    """They were read as 16-bit (value / 257) and clipped: 0..1,000,000 became a white image, "16-bit scaled"."""
    path = _int32_tif(tmp_path / "i32.tif", 1_000_000)
    with pytest.raises(images.ImageError, match=r"i32.tif: not a readable image \(its pixels are 32-bit integers "
                                                r"from 0 to 1000000, beyond 16 bits \(0-65535\)"):
        images.load(path)
    report = images.check_images([path], progress=False)   # registration lists it with the same reason
    assert report.unreadable == [(str(path), images._beyond_16_bit(Image.open(path)))] and not report.converted


def test_16_bit_values_in_a_32_bit_image_are_still_read():
    image = Image.fromarray(np.array([[0, 257], [65535, 514]], dtype=np.int32))
    assert image.mode == "I" and images._beyond_16_bit(image) is None


@pytest.mark.parametrize("args", [[""], ["x.png", "--regressors", ""]])
def test_an_empty_path_is_refused_not_read_as_the_working_folder(tmp_path, monkeypatch, args):
    # `iqabench score "$IMG"` with IMG unset rated the folder "." (and `--regressors ""` looked in it).
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["score", *args])
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "is empty (an unset shell variable?)" in text, text
