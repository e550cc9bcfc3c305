"""What Pillow does to a file without a word is said, naming the file: a 16-bit colour PNG reduced to 8 bits (16-bit
grey had its note), and Pillow's own warnings ("Corrupt EXIF data", ...), which named no file. Pixels unchanged."""
from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from iqabench import images, regressor
from iqabench.cli import app
from iqabench.models import encoders


def _png16(path, values: np.ndarray):
    """A PNG with 16 bits per channel (Pillow writes none): RGB or RGBA from an H x W x 3|4 uint16 array."""
    height, width, channels = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    colour = {3: 2, 4: 6}[channels]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _said(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught]


VALUES = np.random.default_rng(0).integers(0, 65536, (40, 40, 3), dtype=np.uint16)


@pytest.mark.parametrize("alpha, note", [
    (False, "16-bit RGB reduced to 8-bit by Pillow (value / 256, rounded down)"),
    (True, "16-bit RGBA reduced to 8-bit by Pillow (value / 256, rounded down), alpha dropped"),
])
def test_a_16_bit_colour_png_gets_its_note_and_the_same_pixels(tmp_path, alpha, note):
    values = np.concatenate([VALUES, np.full((40, 40, 1), 65535, np.uint16)], 2) if alpha else VALUES
    path = _png16(tmp_path / "c16.png", values)
    image, said = _said(images.load, path)
    assert said == [f"{path}: {note}"]
    assert np.array_equal(images.to_uint8(image), (VALUES >> 8).astype(np.uint8))  # Pillow's high byte, as before
    report, said = _said(images.check_images, [path], progress=False)
    assert not said and report.conversion_note() == f"1 image(s) of mode '{'RGBA' if alpha else 'RGB'};16' ({note}, " \
                                                    "e.g. c16.png)"


def test_8_bit_files_get_no_note(tmp_path):
    for name in ("a.png", "a.jpg", "a.tif"):
        Image.fromarray((VALUES >> 8).astype(np.uint8)).save(tmp_path / name)
        _, said = _said(images.load, tmp_path / name)
        assert said == [] and not images.check_images([tmp_path / name], progress=False).converted


def test_score_says_the_16_bit_note_once(tmp_path):
    encoder = tmp_path / "enc.pt"
    encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), encoder)
    model = f"file:{encoder}"
    regressor.fit(np.random.default_rng(0).normal(size=(20, 64)), np.linspace(0, 1, 20), alpha=0.1,
                  standardize=False, dataset="d").save(regressor.path_for(model, tmp_path / "regressors"))
    path = _png16(tmp_path / "c16.png", VALUES)
    result = CliRunner().invoke(app, ["score", str(path), "--model", model,
                                      "--regressors", str(tmp_path / "regressors")])
    assert result.exit_code == 0, result.output
    assert result.output.count(f"warning: {path}: 16-bit RGB reduced to 8-bit by Pillow (value / 256, rounded "
                               "down)\n") == 1


def _corrupt_exif_jpeg(path):
    """An EXIF block whose IFD says 5 entries and holds 1: Pillow warns "Corrupt EXIF data" while reading it."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 5) + struct.pack("<HHII", 0x0112, 3, 1, 6)
    Image.fromarray((VALUES >> 8).astype(np.uint8)).save(path, exif=b"Exif\x00\x00" + tiff)
    return path


def test_pillows_corrupt_exif_warning_names_the_file(tmp_path):
    path = _corrupt_exif_jpeg(tmp_path / "phone.jpg")
    image, said = _said(images.load, path, exif_transpose=True)  # as `iqabench score` reads a photo
    assert said and all(text.startswith(f"{path}: Corrupt EXIF data. Expecting to read") for text in said)
    with warnings.catch_warnings():  # the pixels as before: turned as its tag says
        warnings.simplefilter("ignore")
        with Image.open(path) as raw:
            assert np.array_equal(images.to_uint8(image), np.asarray(ImageOps.exif_transpose(raw).convert("RGB")))
    report, said = _said(images.check_images, [path], progress=False)
    assert all(text.startswith(f"{path}: ") for text in said) and not report.unreadable


def test_a_pipe_or_device_as_an_image_is_not_called_missing(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.png")
    for path in (tmp_path / "fifo.png", "/dev/zero"):
        with pytest.raises(images.ImageError, match="not a regular file \\(a device, pipe or socket\\)"):
            images.load(path)
