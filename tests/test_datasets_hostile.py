"""Hostile input to `iqabench datasets ...` found by an audit: one clear line, and nothing half-written."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from fakeserver import write_image
from iqabench.datasets.cli import app


def _invoke(registry, *args):
    result = CliRunner().invoke(app, ["--registry", str(registry), *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, " ".join(result.output.split())


def _add_generic(tmp_path, rows: str, *, name="mine", folder=None, csv_name="scores.csv", lo="1", hi="5"):
    for image in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / "imgs" / image, seed=len(image) + ord(image[0]))
    csv = tmp_path / csv_name
    csv.write_text("image,MOS\n" + rows)
    registry = tmp_path / "registry.json"
    return (*_invoke(registry, "add-generic", name, "--folder", folder or tmp_path / "imgs", "--csv", csv,
                     "--lo", lo, "--hi", hi), registry)


@pytest.mark.parametrize("command", [(), ("show", "koniq10k")])
def test_a_hand_written_entry_for_a_known_dataset_names_the_missing_field(tmp_path, command):
    # {"koniq10k": {"path": ...}} ended `iqabench datasets` (and `show`) in KeyError: 'images' from the status table.
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"koniq10k": {"path": str(tmp_path)}}))
    result, out = _invoke(registry, *command)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{registry}: entry 'koniq10k' lacks 'images' (kind 'spec'); register it again with `iqabench datasets " \
           "add koniq10k --from PATH`, or remove the entry" in out, out
    assert json.loads(registry.read_text()) == {"koniq10k": {"path": str(tmp_path)}}  # left as it was


def test_an_image_count_that_is_not_a_count_is_named(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"koniq10k": {"path": str(tmp_path), "images": "many"}}))
    result, out = _invoke(registry)
    assert result.exit_code == 1 and "entry 'koniq10k' has images = 'many'; it must be the number of images" in out


def test_an_unwritable_registry_is_named_and_the_old_one_kept(tmp_path, monkeypatch):
    # A read-only data/ or registry.json ended in a PermissionError traceback from os.replace.
    result, out, registry = _add_generic(tmp_path, "a.png,3\nb.png,2\n")
    assert result.exit_code == 0, out
    before = registry.read_bytes()

    def refuse(src, dst):
        raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))
    monkeypatch.setattr(os, "replace", refuse)  # as a read-only (or immutable) file does, even for root
    result, out, _ = _add_generic(tmp_path, "a.png,3\nc.png,2\n")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write the registry {registry} (Operation not permitted); nothing was registered. Make " \
           f"{tmp_path} a folder you can write to (and registry.json in it writable), then register again" in out
    assert registry.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left beside it


def test_a_registry_whose_folder_is_a_file_is_named(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    write_image(tmp_path / "imgs" / "a.png")
    write_image(tmp_path / "imgs" / "b.png", seed=1)
    (tmp_path / "s.csv").write_text("image,MOS\na.png,3\nb.png,2\n")
    result, out = _invoke(tmp_path / "data" / "registry.json", "add-generic", "mine", "--folder", tmp_path / "imgs",
                          "--csv", tmp_path / "s.csv", "--lo", "1", "--hi", "5")
    assert result.exit_code == 1 and f"cannot write the registry {tmp_path / 'data' / 'registry.json'}" in out
    assert (tmp_path / "data").read_text() == "not a folder"


@pytest.mark.parametrize("content", [b"", b"MATLAB 5.0 MAT-file" + bytes(30), b"\0" * 200, "truncated"])
def test_a_damaged_clive_mat_file_is_named(tmp_path, content):
    # scipy's MatReadError ("Mat file appears to be truncated") and its IndexError/OSError escaped as tracebacks.
    data = tmp_path / "ChallengeDB_release" / "Data"
    data.mkdir(parents=True)
    names = np.array([[f"t{i}.bmp"] for i in range(1, 8)] + [["1.bmp"], ["2.bmp"]], dtype=object)
    scipy.io.savemat(data / "AllImages_release.mat", {"AllImages_release": names})
    mos = data / "AllMOS_release.mat"
    scipy.io.savemat(mos, {"AllMOS_release": np.array([[50.0] * 7 + [60, 61]])})
    mos.write_bytes(mos.read_bytes()[:150] if content == "truncated" else content)
    registry = tmp_path / "registry.json"
    result, out = _invoke(registry, "add", "clive", "--from", tmp_path, "--partial")
    assert result.exit_code == 1 and "Traceback" not in result.output and not registry.exists()
    assert f"clive: cannot read MATLAB file {mos} (" in out and "it is damaged or truncated; replace it with the " \
                                                                "file as published" in out, out


def test_an_image_below_the_minimum_side_is_refused_by_name(tmp_path):
    # It registered, then `dvc repro` failed in extract with torch's "Input and output sizes should be greater
    # than 0", naming no file.
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (1, 1)).save(tmp_path / "imgs" / "dot.png")
    Image.new("RGB", (300, 20)).save(tmp_path / "imgs" / "thin.jpg")
    result, out, registry = _add_generic(tmp_path, "a.png,3\ndot.png,2\nthin.jpg,4\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "mine: 2 image(s) are smaller than 32 px on a side, which the models need:" in out
    assert "dot.png: 1 x 1 px" in out and "thin.jpg: 300 x 20 px" in out  # the JPEG's size before its 1/8 draft
    assert "Remove them from the score file (or replace them) and register again" in out


def test_registering_a_name_again_says_what_it_replaces(tmp_path):
    result, out, registry = _add_generic(tmp_path, "a.png,3\nb.png,2\n")
    assert result.exit_code == 0 and "replaces" not in out, out
    result, out, _ = _add_generic(tmp_path, "a.png,3\nc.png,2\n", csv_name="new.csv")
    assert result.exit_code == 0, out
    assert f"warning: mine: replaces the earlier registration of mine (csv {tmp_path / 'scores.csv'}, folder " \
           f"{tmp_path / 'imgs'})" in out
    assert json.loads(registry.read_text())["mine"]["csv"] == str(tmp_path / "new.csv")


def test_a_file_or_missing_folder_is_called_so_and_moved_only_when_registered(tmp_path):
    write_image(tmp_path / "some.png")
    result, out, registry = _add_generic(tmp_path, "a.png,3\nb.png,2\n", folder=tmp_path / "some.png")
    assert result.exit_code == 1 and not registry.exists()
    assert f"image folder {tmp_path / 'some.png'} is a file, not a folder; give the folder that holds the images" \
           in out and "moved" not in out
    result, out, _ = _add_generic(tmp_path, "a.png,3\nb.png,2\n", folder=tmp_path / "nowhere")
    assert result.exit_code == 1 and out.endswith(f"image folder {tmp_path / 'nowhere'} does not exist"), out
    assert _add_generic(tmp_path, "a.png,3\nb.png,2\n")[0].exit_code == 0
    result, out, _ = _add_generic(tmp_path, "a.png,3\nb.png,2\n", folder=tmp_path / "nowhere")
    assert result.exit_code == 1 and "does not exist; if it moved, register it again with `iqabench datasets " \
                                      "add-generic mine --folder DIR" in out


def test_scores_outside_the_users_own_scale_are_refused_with_their_lines(tmp_path):
    # They only warned, and the normalised scores left [0, 1].
    result, out, registry = _add_generic(tmp_path, "a.png,-5\nb.png,50\nc.png,500\n", lo="0", hi="100")
    assert result.exit_code == 1 and not registry.exists()
    assert f"mine: {tmp_path / 'scores.csv'}: 2 'MOS' score(s) outside the declared range [0, 100] (line 2: -5, " \
           "line 4: 500); set --lo and --hi to the lowest and highest score your rating scale allows" in out, out


def test_a_binary_registry_file_is_named_not_a_traceback(tmp_path):
    # `iqabench datasets --registry <binary file>` ended in a UnicodeDecodeError traceback.
    registry = tmp_path / "registry.json"
    registry.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    result, out = _invoke(registry)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{registry} is not UTF-8 text (a binary file?); restore it or delete it and register again" in out


@pytest.mark.parametrize("args", [["--registry", ""], ["--data-root", " "], ["add", "live", "--from", ""],
                                  ["add-generic", "mine", "--folder", "", "--csv", "s.csv", "--lo", "1", "--hi", "5"],
                                  ["add-generic", "mine", "--folder", "imgs", "--csv", "", "--lo", "1", "--hi", "5"]])
def test_an_empty_path_option_is_refused_not_read_as_the_working_folder(tmp_path, monkeypatch, args):
    # `--registry ""` (an unset shell variable) was Path("."): the working folder, listed as the registry.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "is empty (an unset shell variable?)" in text, text
    assert list(tmp_path.iterdir()) == []  # nothing written
