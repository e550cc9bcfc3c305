"""Hostile input to `iqabench datasets ...` from a second audit: score files, names, links, registry entries and
where the command runs. Each gives one line naming the file, field or value, and nothing is registered."""
from __future__ import annotations

import dataclasses
import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fakeserver import kadid_layout, serve, write_image, zip_folder
from iqabench.datasets import DatasetError, Remote, build_manifest, registry
from iqabench.datasets.cli import app
from iqabench.datasets.scorefiles import line_of, numeric_column, read_csv_columns


def _invoke(*args, registry=None):
    options = ["--registry", str(registry)] if registry else []
    result = CliRunner().invoke(app, [*options, *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, " ".join(result.output.split())


def _images(folder: Path, names=("a.png", "b.png", "c.png")) -> Path:
    for i, name in enumerate(names):
        write_image(folder / name, seed=i)
    return folder


def _generic(tmp_path, content: str | bytes, *extra, folder=None):
    """add-generic of the CSV ``content`` over images a.png, b.png, c.png; (result, one-line output, registry)."""
    folder = folder or _images(tmp_path / "imgs")
    csv = tmp_path / "scores.csv"
    csv.write_bytes(content if isinstance(content, bytes) else content.encode())
    registry = tmp_path / "registry.json"
    result, out = _invoke("add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5", *extra,
                          registry=registry)
    return result, out, registry


def _koniq(root: Path, rows: str) -> Path:
    """A partial KonIQ-10k copy: the sets file with ``rows`` and images a.png, b.png in 512x384/."""
    _images(root / "512x384", ("a.png", "b.png"))
    (root / "koniq10k_distributions_sets.csv").write_text("image_name,MOS,set\n" + rows)
    return root / "koniq10k_distributions_sets.csv"


# 1. A score column of booleans: pandas read true/false as bool and pd.to_numeric made them 1 and 0.

@pytest.mark.parametrize("cell, says", [
    ("9" * 400, "'999999999999999999999999999999'... (400 characters), not a finite number"),  # it was echoed whole
    ("1e999", "'1e999', not a finite number"),  # "not a number" said it was no number at all
])
def test_a_score_beyond_a_float_is_named_briefly(tmp_path, cell, says):
    result, out, registry = _generic(tmp_path, f"image,MOS\na.png,3\nb.png,{cell}\n")
    assert result.exit_code == 1 and not registry.exists(), out
    assert f"scores.csv line 3: 'MOS' is {says} (1 such row(s))" in out, out


@pytest.mark.parametrize("cells", [("true", "false"), ("TRUE", "FALSE"), ("True", "False")])
def test_boolean_scores_are_not_numbers(tmp_path, cells):
    result, out, registry = _generic(tmp_path, f"image,MOS\na.png,{cells[0]}\nb.png,{cells[1]}\n")
    assert result.exit_code == 1 and not registry.exists(), out
    assert f"scores.csv line 2: 'MOS' is '{cells[0]}', not a number (2 such row(s))" in out, out


def test_boolean_mos_in_a_partial_koniq_copy_is_not_registered(tmp_path):
    sets = _koniq(tmp_path / "koniq", "a.png,true,test\nb.png,false,training\n")
    registry = tmp_path / "registry.json"
    result, out = _invoke("add", "koniq10k", "--from", tmp_path / "koniq", "--partial", registry=registry)
    assert result.exit_code == 1 and not registry.exists(), out
    assert f"koniq10k: {sets} line 2: 'MOS' is 'true', not a number" in out, out


def test_a_spreadsheet_true_is_not_a_number():
    frame = pd.DataFrame({"MOS": [3.5, True]}, dtype=object)  # what read_excel gives for an Excel TRUE
    with pytest.raises(DatasetError, match=r"grades.xlsx line 3: 'MOS' is 'True', not a number"):
        numeric_column(frame, "MOS", Path("grades.xlsx"), "bid")


# 2. A hand-edited registry entry whose higher_is_better is text: "no" is true as a truth value.

@pytest.mark.parametrize("value", ["no", "false", 0])
def test_higher_is_better_must_be_a_json_boolean(tmp_path, value):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"mine": {"kind": "generic", "path": str(tmp_path), "csv": "s.csv",
                                             "image_col": "image", "score_col": "MOS", "lo": 0, "hi": 5,
                                             "higher_is_better": value, "images": 2}}))
    result, out = _invoke("--data-root", tmp_path / "raw", registry=registry)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{registry}: entry 'mine' has higher_is_better = {value!r}; it must be the JSON boolean true or false " \
           "(unquoted); register it again with `iqabench datasets add-generic mine" in out, out


# 3. A published set's score file naming a file outside the dataset folder.

@pytest.mark.parametrize("name", ["/ABS/rgb.png", "../../outside/rgb.png"])
def test_a_koniq_row_outside_the_dataset_folder_is_refused(tmp_path, name):
    write_image(tmp_path / "outside" / "rgb.png")
    listed = name.replace("/ABS", str(tmp_path / "outside"))
    sets = _koniq(tmp_path / "k" / "koniq", f"a.png,50,test\n{listed},60,test\n")
    registry = tmp_path / "registry.json"
    result, out = _invoke("add", "koniq10k", "--from", tmp_path / "k" / "koniq", "--partial", registry=registry)
    assert result.exit_code == 1 and not registry.exists(), out
    shown = listed if listed.startswith("/") else f"512x384/{listed}"
    assert f"koniq10k: {sets} lists image '{shown}', which is outside the dataset folder {tmp_path / 'k' / 'koniq'}; " \
           "names in a score file must be relative paths inside it" in out, out


def test_a_kadid_reference_outside_the_dataset_folder_is_refused(tmp_path):
    kadid_layout(tmp_path)
    dmos = tmp_path / "kadid10k" / "dmos.csv"
    dmos.write_text(dmos.read_text().replace(",I02.png,", ",../../../I02.png,"))
    # Refused as not the published name (ref_img is dist_img's I02 + .png) before the folder check sees it.
    with pytest.raises(DatasetError, match=r"kadid10k: .*dmos.csv line 4: ref_img '\.\./\.\./\.\./I02.png' does not "
                                           r"match dist_img 'I02_25_03.png'"):
        build_manifest("kadid10k", tmp_path)


# 4. Tracebacks: a NUL byte, an unterminated quote, a link loop.

def test_a_nul_byte_in_an_image_name_is_named(tmp_path):
    result, out, registry = _generic(tmp_path, b"image,MOS\na.png,3\nb\x00.png,4\n")
    assert result.exit_code == 1 and not registry.exists() and "Traceback" not in result.output
    assert r"scores.csv line 3: 'image' 'b\x00.png' holds a NUL byte (\x00), which no file name can" in out, out


@pytest.mark.parametrize("koniq", [False, True])
def test_an_unterminated_quote_names_its_line(tmp_path, koniq):
    rows = 'a.png,3,test\n"b.png,4,test\nc.png,5,test\n'
    if koniq:
        csv = _koniq(tmp_path / "koniq", rows)
        result, out = _invoke("add", "koniq10k", "--from", tmp_path / "koniq", "--partial",
                              registry=tmp_path / "registry.json")
    else:
        csv = tmp_path / "scores.csv"
        result, out, _ = _generic(tmp_path, "image,MOS,set\n" + rows)
    assert result.exit_code == 1 and not (tmp_path / "registry.json").exists()
    assert f"{csv} line 3: a quote (\") opens a field that never closes (pandas: Error tokenizing data. C error: " \
           "EOF inside string" in out and "close the quote, or remove it" in out, out


def test_a_long_row_in_a_published_csv_names_its_line(tmp_path):
    # Without index_col=False (the published parsers) pandas raised ParserError "Expected 3 fields in line 4".
    sets = _koniq(tmp_path / "koniq", "a.png,50,test\n\nb.png,60,test,extra\n")
    result, out = _invoke("add", "koniq10k", "--from", tmp_path / "koniq", "--partial",
                          registry=tmp_path / "registry.json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{sets} line 4 has more fields than its header (line 1: 'image_name,MOS,set')" in out, out


@pytest.mark.parametrize("option", ["--from", "--folder", "--csv"])
def test_a_symlink_loop_as_the_source_is_named(tmp_path, option):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    registry = tmp_path / "registry.json"
    if option == "--from":
        result, out = _invoke("add", "koniq10k", "--from", loop, registry=registry)
        name, what = "koniq10k", "folder"
    else:
        folder, csv = _images(tmp_path / "imgs"), tmp_path / "s.csv"
        csv.write_text("image,MOS\na.png,1\nb.png,2\n")
        paths = {"--folder": folder, "--csv": csv, option: loop}
        result, out = _invoke("add-generic", "mine", "--folder", paths["--folder"], "--csv", paths["--csv"],
                              "--lo", "0", "--hi", "5", registry=registry)
        name, what = "mine", "file" if option == "--csv" else "folder"
    assert result.exit_code == 1 and not registry.exists() and "Traceback" not in result.output
    assert f"{name}: {option} {loop} is a symbolic link that leads back to itself (a link loop); give the real " \
           f"{what}" in out, out


# 5. Line numbers are the file's physical lines, whatever blank lines or quoted line breaks come before.

@pytest.mark.parametrize("content, says", [
    ("image,MOS\n\na.png,3\n\n   \nb.png,x\n", "scores.csv line 6: 'MOS' is 'x', not a number"),
    ('image,MOS\n"a\nnew.png",3\nb.png,\n', "scores.csv line 4: 'MOS' is blank"),
    ("image,MOS\r\n\r\na.png,3\r\n\r\na.png,4\r\n", "scores.csv line 5: image 'a.png' is listed again (first on "
                                                    "line 3)"),
    ("image,MOS\n\na.png,3\n\nb.png,9\n", "(line 5: 9)"),
])
def test_errors_name_the_physical_line(tmp_path, content, says):
    result, out, registry = _generic(tmp_path, content)
    assert result.exit_code == 1 and not registry.exists() and says in out, out


def test_line_of_maps_rows_to_lines_and_keeps_the_old_count_without_a_map(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text('image,MOS\n\n"x\ny",1\n\t\n"",2\nz,3\n')
    frame = read_csv_columns(csv, "t", ["image", "MOS"])
    assert [line_of(frame, row) for row in range(len(frame))] == [3, 6, 7]
    assert line_of(pd.DataFrame({"a": [1, 2]}), 1) == 3 and line_of(pd.DataFrame({"a": [1]}), 0, first_line=5) == 5


# 6. Messages that said the wrong thing, or too little.

def test_a_folder_listed_as_an_image_is_called_a_folder(tmp_path):
    (_images(tmp_path / "imgs") / "sub").mkdir()
    result, out, registry = _generic(tmp_path, "image,MOS\na.png,3\nsub,4\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "1 of 2 listed image(s) are missing or are folders:" in out, out
    assert f"{tmp_path / 'imgs' / 'sub'} (a folder, not an image file; list the image files in it instead)" in out


def test_a_name_in_another_unicode_normalisation_is_explained(tmp_path):
    folder = _images(tmp_path / "imgs", ("a.png", unicodedata.normalize("NFD", "é.png")))
    result, out, registry = _generic(tmp_path, "image,MOS\na.png,3\n" + unicodedata.normalize("NFC", "é.png") + ",4\n",
                                     folder=folder)
    assert result.exit_code == 1 and not registry.exists()
    assert "the folder holds the same name in another Unicode normalisation, NFD: 'e\\u0301.png', where the score " \
           "file has '\\xe9.png'; rename the file or the entry so both are spelled alike" in out, out


@pytest.mark.parametrize("name, says", [
    ("synthetic-single", "'synthetic-single' is one of iqabench's embedded datasets: the prepare stage of `dvc repro` "
                         "builds it from scikit-image's photographs, so there is nothing to download"),
    ("koniq10k-subset", "'koniq10k-subset' is the real subset in ../shared/datasets/koniq10k-subset, which `dvc "
                        "repro` reads where it is, so there is nothing to download"),
    ("KADID10K", "unknown dataset 'KADID10K' (did you mean 'kadid10k'?)"),
])
def test_download_of_a_name_that_is_not_published(tmp_path, name, says):
    result, out = _invoke("download", name, "--dest", tmp_path / "d")
    assert result.exit_code == 1 and says in out and not (tmp_path / "d").exists(), out


def test_show_suggests_the_name_whatever_its_case(tmp_path):
    result, out = _invoke("--data-root", tmp_path / "raw", "show", "KADID10K", registry=tmp_path / "r.json")
    assert result.exit_code == 1 and "unknown dataset 'KADID10K' (did you mean 'kadid10k'?); known:" in out, out


@pytest.mark.parametrize("score_type", ["", "  "])
def test_an_empty_score_type_is_refused(tmp_path, score_type):
    result, out, registry = _generic(tmp_path, "image,MOS\na.png,3\nb.png,4\n", "--score-type", score_type)
    assert result.exit_code == 1 and not registry.exists()
    assert "mine: --score-type is empty; give the kind of score, e.g. --score-type MOS or DMOS" in out, out


# 7. The default registry is the repository's, wherever in it the command runs.

def _outside_any_repository(path: Path) -> bool:
    return not any((p / "params.yaml").is_file() for p in (path, *path.parents))


def test_the_default_registry_is_the_repositorys_from_a_subfolder(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "params.yaml").write_text("seed: 0\n")
    folder, csv = _images(tmp_path / "imgs"), tmp_path / "s.csv"
    csv.write_text("image,MOS\na.png,1\nb.png,2\n")
    monkeypatch.chdir(repo / "sub")
    result, out = _invoke("add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5")
    assert result.exit_code == 0, out
    assert json.loads((repo / "data" / "registry.json").read_text())["mine"]["csv"] == str(csv)
    assert not (repo / "sub" / "data").exists()
    result, out = _invoke("add-generic", "other", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5",
                          registry="here.json")  # an explicit path stays as given
    assert result.exit_code == 0 and (repo / "sub" / "here.json").is_file(), out


@pytest.mark.parametrize("command", [("add-generic", "mine", "--folder", "imgs", "--csv", "s.csv", "--lo", "0", "--hi",
                                      "5"), ("add", "koniq10k", "--from", "."), ()])
def test_outside_a_repository_the_default_registry_is_refused(tmp_path, monkeypatch, command):
    if not _outside_any_repository(tmp_path):
        pytest.skip(f"{tmp_path} is inside a folder with params.yaml")
    monkeypatch.chdir(tmp_path)
    result, out = _invoke(*command)
    assert result.exit_code == 1 and not (tmp_path / "data").exists()
    assert f"no params.yaml in {tmp_path} or its parents, so there is no repository data/registry.json here: run " \
           "`iqabench datasets` from the repository (any folder in it), or pass --registry FILE" in out, out
    assert np.all([not p.name.startswith("data") for p in tmp_path.iterdir()])


def test_a_scale_wider_than_a_float_is_refused(tmp_path):
    # -1e308 .. 1e308: hi - lo overflowed and every score became 0.0 without a word.
    folder = _images(tmp_path / "imgs")
    csv = tmp_path / "scores.csv"
    csv.write_text("image,score\na.png,1\nb.png,2\nc.png,3\n")
    result, out = _invoke("add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "-1e308", "--hi",
                          "1e308", registry=tmp_path / "registry.json")
    assert result.exit_code == 1 and "wider than a float can hold" in out
    assert not (tmp_path / "registry.json").exists()


def test_a_name_too_long_for_a_file_name_is_refused(tmp_path):
    # 256 characters registered, then fingerprint and prepare died with "File name too long" tracebacks.
    result, out = _invoke("add-generic", "x" * 65, "--folder", _images(tmp_path / "imgs"), "--csv",
                          tmp_path / "s.csv", "--lo", "0", "--hi", "5", registry=tmp_path / "registry.json")
    assert result.exit_code == 1 and "up to 64 letters" in out


def test_a_content_column_with_one_value_is_refused_at_registration(tmp_path):
    # It registered, and only evaluate (after prepare and extract) said no split could keep contents apart.
    result, out, registry = _generic(tmp_path, "image,MOS,scene\na.png,1,s\nb.png,2,s\nc.png,3,s\n",
                                     "--content-col", "scene")
    assert result.exit_code == 1 and "column 'scene'" in out and "holds one value ('s') for every image" in out
    assert not registry.exists()


def test_download_retries_below_zero_are_refused():
    result = CliRunner().invoke(app, ["download", "kadid10k", "--retries", "-5"])
    assert result.exit_code == 2 and "greater than or equal to 0" in " ".join(result.output.split())


def test_download_of_a_cut_release_says_so_and_partial_accepts_it(tmp_path, monkeypatch):
    # A server's kadid10k.zip with 3 of the 10,125 images was "kadid10k is ready" and its hash pinned.
    kadid_layout(tmp_path / "src")
    with serve({"kadid10k.zip": zip_folder(tmp_path / "src")}) as server:
        spec = dataclasses.replace(registry.SPECS["kadid10k"], remotes=(Remote(server.url("kadid10k.zip"),
                                                                                "kadid10k.zip"),))
        monkeypatch.setitem(registry.SPECS, "kadid10k", spec)
        result, out = _invoke("download", "kadid10k", "--dest", tmp_path / "raw" / "kadid10k")
        assert result.exit_code == 1 and "the download holds 3 rated image(s); the published dataset has 10125" in out
        assert "ready" not in out and not (tmp_path / "checksums" / "kadid10k.lock.json").exists()
        result, out = _invoke("download", "kadid10k", "--dest", tmp_path / "raw" / "kadid10k", "--partial")
    assert result.exit_code == 0 and "kadid10k is ready" in out, out
    assert (tmp_path / "checksums" / "kadid10k.lock.json").is_file()
    # `iqabench datasets` shows what the copy holds, not the published count.
    from iqabench.datasets.status import status_table
    row = next(r for r in status_table(tmp_path / "raw", tmp_path / "r.json") if r["name"] == "kadid10k")
    assert (row["images"], row["state"], row["status"]) == (3, "partial", "ready (partial: 3 of 10125 images)")


def test_a_scale_far_wider_than_the_scores_is_refused_before_ties_are_written(tmp_path):
    # --lo -1e12 --hi 1e12 for scores 1-3: normalised and written at 10 digits they were all 0.5, ranked as ties.
    result, out, registry = _generic(tmp_path, "image,MOS\na.png,1\nb.png,2\nc.png,3\n", "--lo", "-1e12", "--hi", "1e12")
    assert result.exit_code == 1 and not registry.exists()
    assert ("mine: the declared scale [-1e+12, 1e+12] is so much wider than the scores (min 1, max 3) that normalised "
            "to [0, 1] and written at 10 significant digits, 3 distinct scores become 1; give the scale the scores "
            "are on (--lo/--hi)") in out, out



def test_byte_identical_copies_under_other_names_join_one_content(tmp_path):
    # 15 photos plus copies under new names registered silently: 4 of 6 test images had their twin in train,
    # and BRISQUE's SRCC was 0.96. Copies now share a content, so content-disjoint splits keep them together.
    import shutil

    folder = _images(tmp_path / "imgs", ("a.png", "b.png", "c.png", "d.png"))
    shutil.copy(folder / "a.png", folder / "copy-of-a.png")
    with pytest.warns(UserWarning, match=r"mine: 1 image file\(s\) have byte-identical copies under another name "
                                         r"\(a.png = copy-of-a.png\); their contents are joined, .* \(4 contents\)"):
        frame = build_generic(tmp_path, folder, "image,MOS\na.png,1\nb.png,2\nc.png,3\nd.png,4\ncopy-of-a.png,2\n")
    assert frame.set_index(frame["image"].map(lambda p: Path(p).name))["content_id"].to_dict() == {
        "a.png": "a", "b.png": "b", "c.png": "c", "d.png": "d", "copy-of-a.png": "a"}


def build_generic(tmp_path, folder, rows: str):
    from iqabench.datasets.local import generic_manifest
    csv = tmp_path / "scores.csv"
    csv.write_text(rows)
    entry = {"path": str(folder), "kind": "generic", "csv": str(csv), "image_col": "image", "score_col": "MOS",
             "lo": 0, "hi": 5, "higher_is_better": True, "score_type": "MOS"}
    return generic_manifest("mine", entry)
