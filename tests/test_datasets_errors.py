"""`iqabench datasets add / add-generic / status`: bad input gives one clear line, and nothing is registered."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from fakeserver import write_image
from iqabench.datasets.cli import app


def _invoke(registry, *args):
    result = CliRunner().invoke(app, ["--registry", str(registry), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _generic(tmp_path, rows: str, *extra):
    folder = tmp_path / "imgs"
    for name in ("a.png", "b.png"):
        write_image(folder / name)
    write_image(tmp_path / "other" / "x.jpg")
    csv = tmp_path / "scores.csv"
    csv.write_text("image,MOS\n" + rows)
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", "mine", "--folder", str(folder), "--csv", str(csv),
                     "--lo", "1", "--hi", "5", *extra)
    return result, registry


def test_row_outside_the_folder_is_refused_with_its_line(tmp_path):
    result, registry = _generic(tmp_path, "a.png,3\n../other/x.jpg,4\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "scores.csv line 3: image '../other/x.jpg' is outside --folder" in " ".join(result.output.split())


def test_absolute_row_is_refused_with_its_line(tmp_path):
    result, registry = _generic(tmp_path, f"{tmp_path / 'other' / 'x.jpg'},4\nb.png,2\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "line 2" in result.output and "is outside --folder" in " ".join(result.output.split())


def test_empty_scale_is_refused_before_reading(tmp_path):
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", "mine", "--folder", str(tmp_path / "nowhere"), "--csv",
                     str(tmp_path / "none.csv"), "--lo", "5", "--hi", "5")
    assert result.exit_code == 1 and not registry.exists()
    assert "--hi (5) must be greater than --lo (5)" in result.output
    assert "Traceback" not in result.output


def test_literal_nan_is_quoted_not_called_blank(tmp_path):
    result, registry = _generic(tmp_path, "a.png,NaN\nb.png,\n")
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and not registry.exists()
    assert "line 2: 'MOS' is 'NaN', not a number (2 such row(s))" in out


def test_blank_score_is_still_called_blank(tmp_path):
    result, _ = _generic(tmp_path, "a.png,3\nb.png,\n")
    assert "line 3: 'MOS' is blank, not a number" in " ".join(result.output.split())


def test_clive_mat_with_a_duplicated_image_is_shown_cleanly(tmp_path):
    base = tmp_path / "ChallengeDB_release"
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "10.bmp"]
    write_image(base / "Images" / "10.bmp")
    (base / "Data").mkdir(parents=True)
    scipy.io.savemat(base / "Data" / "AllImages_release.mat",
                     {"AllImages_release": np.array([[n] for n in names], dtype=object)})
    scipy.io.savemat(base / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0] * 7 + [60, 61]])})
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add", "clive", "--from", str(tmp_path), "--partial")
    assert result.exit_code == 1 and not registry.exists()
    assert "error:" in result.output and "10.bmp" in result.output and "listed twice" in result.output


def test_hand_edited_entry_without_path_names_the_entry(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"kadid10k": {"kind": "spec", "images": 3}}))
    result = _invoke(registry)
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "entry 'kadid10k' lacks 'path'" in out
    assert "iqabench datasets add kadid10k --from PATH" in out
    assert json.loads(registry.read_text()) == {"kadid10k": {"kind": "spec", "images": 3}}  # left as it was


def test_listed_but_absent_datasets_say_the_command_that_gets_them(tmp_path):
    from iqabench.datasets import DatasetError
    from iqabench.datasets.local import registered_manifest

    expected = {"koniq10k": "`iqabench datasets download koniq10k`",
                "spaq": "no public URL", "nonexistent": "`iqabench datasets add-generic nonexistent"}
    for name, says in expected.items():
        try:
            registered_manifest(name, tmp_path / "registry.json")
        except DatasetError as err:
            assert says in str(err), err
        else:
            raise AssertionError(f"{name}: no error")
    assert not (tmp_path / "registry.json").exists()


def test_fit_niqe_names_a_broken_kadis_image_without_a_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from stage_cmd import args as dvc_args

    (tmp_path / "params.yaml").write_text("niqe:\n  kadis_sample: 2\n")
    folder = tmp_path / "data" / "raw" / "kadis700k" / "ref_imgs"
    folder.mkdir(parents=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    stage = Path(__file__).resolve().parents[1] / "stages" / "fit_niqe.py"
    proc = subprocess.run([sys.executable, str(stage), *dvc_args("fit_niqe")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "fit_niqe: the pristine photos from kadis700k cannot be used" in proc.stderr and "broken.png" in proc.stderr
    assert not (tmp_path / "data" / "models").exists()


def _generic_file(tmp_path, content: bytes, names=("a.png", "b.png"), name="mine", *extra):
    """add-generic with a score file of exactly these bytes (no header added)."""
    folder = tmp_path / "imgs"
    for i, image in enumerate(names):
        write_image(folder / image, seed=i)
    csv = tmp_path / "scores.csv"
    csv.write_bytes(content)
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", name, "--folder", str(folder), "--csv", str(csv), "--lo", "1",
                     "--hi", "5", *extra)
    return result, registry, " ".join(result.output.split())


@pytest.mark.parametrize("content, says", [
    (b"", "scores.csv is empty; it needs a header line with the columns ['image', 'MOS']"),
    (b"image,MOS\n", "no rows; the dataset produced no rated images"),
    (b"image;MOS\na.png;3,5\nb.png;2,1\n", "has one column 'image;MOS': its fields are separated by ';'"),
    (b"image\tMOS\na.png\t3\nb.png\t2\n", "its fields are separated by a tab"),
    # pandas took a long first row's first field as an index: 'MOS' was 'extra', the image '3'
    (b"image,MOS\na.png,3,extra\nb.png,2\n", "scores.csv line 2 has more fields than its header (line 1: "
                                          "'image,MOS')"),
    (b"# my scores\nimage,MOS\na.png,3\nb.png,2\n", "line 2 has more fields than its header (line 1: '# my scores')"),
    (b"image,MOS,MOS\na.png,3,4\nb.png,2,1\n", "scores.csv has the column 'MOS' more than once; keep one"),
    (b"image,MOS,MOS \na.png,3,4\nb.png,2,1\n", "scores.csv has the column 'MOS' more than once; keep one"),
    (b"image,MOS\na.png,3\nb.png,2\n" + b"a" * 300 + b".png,1\n",
     "File name too long; no file can have this name"),
    ("image,MOS\ncaf\xe9.png,3\nb.png,2\n".encode("latin-1"), "scores.csv is not UTF-8 text"),
    (b"image,MOS\na.png,3\nb.png,2\n./a.png,4\n", "line 4: image '"),
])
def test_malformed_score_files_name_the_problem_and_register_nothing(tmp_path, content, says):
    result, registry, out = _generic_file(tmp_path, content)
    assert result.exit_code == 1 and not registry.exists() and "Traceback" not in result.output
    assert says in out, out


def test_a_wrong_column_name_points_at_the_options(tmp_path):
    result, registry, out = _generic_file(tmp_path, b"image,Score\na.png,3\nb.png,2\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "lacks column(s) ['MOS']; it has ['image', 'Score']; name its columns with --image-col and --score-col" \
        in out


def test_numeric_image_names_stay_as_written(tmp_path):
    # A name column of numbers was read as floats: '2' became '2.0' and the image was "missing".
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i, name in enumerate(("1.0", "2")):  # files named by a number, as some exports do
        Image.new("RGB", (40, 32), (i, 2 * i, 3 * i)).save(tmp_path / "imgs" / name, format="PNG")
    result, registry, out = _generic_file(tmp_path, b"image,MOS\n1.0,3\n2,2\n", names=())
    assert result.exit_code == 0, out
    assert json.loads(registry.read_text())["mine"]["images"] == 2


def test_byte_order_mark_and_unicode_names_register(tmp_path):
    content = "\ufeffimage,MOS\nünï cødé.png,3\n\"b, c.png\",2\n".encode("utf-8")
    result, registry, out = _generic_file(tmp_path, content, names=("ünï cødé.png", "b, c.png"))
    assert result.exit_code == 0, out


@pytest.mark.parametrize("name, says", [
    ("../evil", "'../evil' cannot name a dataset: use up to 64 letters, digits, '_' and '-'"),
    ("a b", "'a b' cannot name a dataset"),
    ("synthetic-single", "'synthetic-single' is one of iqabench's own datasets"),
    ("koniq10k-subset", "'koniq10k-subset' is one of iqabench's own datasets"),
])
def test_names_that_cannot_be_a_dataset_are_refused(tmp_path, name, says):
    result, registry, out = _generic_file(tmp_path, b"image,MOS\na.png,3\nb.png,2\n", ("a.png", "b.png"), name)
    assert result.exit_code == 1 and not registry.exists() and says in out, out


@pytest.mark.parametrize("lo, hi", [("1", "inf"), ("-inf", "5"), ("nan", "5")])
def test_an_infinite_or_nan_scale_is_refused(tmp_path, lo, hi):
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", "mine", "--folder", str(tmp_path), "--csv", str(tmp_path / "s.csv"),
                     "--lo", lo, "--hi", hi)
    assert result.exit_code == 1 and not registry.exists()
    assert "must be finite numbers" in " ".join(result.output.split())


def test_a_folder_given_as_the_score_file_says_so(tmp_path):
    result, registry, out = _generic_file(tmp_path, b"image,MOS\na.png,3\n", ("a.png",), "mine")
    result = _invoke(registry, "add-generic", "mine", "--folder", str(tmp_path / "imgs"), "--csv",
                     str(tmp_path / "imgs"), "--lo", "1", "--hi", "5")
    assert result.exit_code == 1 and "is a folder; give the CSV file in it with --csv" in result.output


def test_a_patch_size_above_a_photograph_is_refused_before_any_image_is_written(tmp_path):
    # It once ended in "stack expects a non-empty TensorList" (larger than every photo), or, between the
    # smallest and the largest photo, silently left a photograph's content out of the set.
    from iqabench.datasets import DatasetError, embedded

    with pytest.raises(DatasetError, match=r"synthetic-mixed: prepare.patch_size = 400 px is larger than photograph "
                                           r"chelsea \(300 px on its shorter side\); set prepare.patch_size to at "
                                           r"most 300"):
        embedded.build("synthetic-mixed", tmp_path / "out", patch_size=400, max_patches_per_photo=1,
                       versions_per_patch=1, max_k=2, label_metrics=["psnr"], seed=0)
    assert not (tmp_path / "out").exists()


def test_a_misspelt_dataset_name_gets_a_suggestion(tmp_path):
    result = _invoke(tmp_path / "registry.json", "download", "kadid1Ok")
    assert result.exit_code == 1 and "unknown dataset 'kadid1Ok' (did you mean 'kadid10k'?)" in result.output


def test_a_registered_folder_that_moved_says_how_to_register_it_again(tmp_path):
    from iqabench.datasets import DatasetError
    from iqabench.datasets.local import registered_manifest

    result, registry, out = _generic_file(tmp_path, b"image,MOS\na.png,3\nb.png,2\n")
    assert result.exit_code == 0, out
    (tmp_path / "imgs").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match=r"mine: image folder .*imgs does not exist; if it moved, register it again "
                                           r"with `iqabench datasets add-generic mine --folder DIR"):
        registered_manifest("mine", registry)


def test_a_link_to_a_listed_image_is_the_same_image(tmp_path):
    # It registered, then prepare wrote a manifest with one path twice (paths are stored resolved): extract failed.
    write_image(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "link.png").symlink_to("a.png")
    result, registry, out = _generic_file(tmp_path, b"image,MOS\na.png,3\nb.png,2\nlink.png,4\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "line 4: image '" in out and "link.png' is the file of line 2 again (spelled differently, or a link" in out


@pytest.mark.parametrize("content", [b"image,MOS\r\na.png,3\r\nb.png,2\r\n", b"image,MOS\na.png,3,\nb.png,2,\n",
                                     b"image,MOS\na.png, 3.5 \n\nb.png,2\n"])
def test_crlf_trailing_commas_and_spaces_are_read_as_meant(tmp_path, content):
    result, registry, out = _generic_file(tmp_path, content)
    assert result.exit_code == 0, out
    from iqabench.datasets.local import registered_manifest
    assert registered_manifest("mine", registry)["raw_score"].tolist() in ([3.0, 2.0], [3.5, 2.0])


@pytest.mark.parametrize("content", [b"image,MOS\na.png,3\nb.png,3\n", b"image,MOS\na.png,3\n"])
def test_scores_that_are_all_equal_are_refused(tmp_path, content):
    # SRCC is undefined on such a set; it registered, and evaluate found out much later.
    result, registry, out = _generic_file(tmp_path, content)
    assert result.exit_code == 1 and not registry.exists()
    assert "score(s) in" in out and "are 3; a quality dataset needs images with different scores" in out


@pytest.mark.parametrize("entries, says", [
    ({"foo": {"kind": "spec", "path": "/tmp"}}, "entry 'foo' has kind 'spec', but 'foo' is not a known dataset"),
    ({"foo": {"kind": "generic", "path": "/x", "csv": "/x.csv", "image_col": "image", "score_col": "MOS",
              "lo": "1", "hi": 5, "higher_is_better": True}},
     "entry 'foo' has lo = '1', hi = 5; they must be finite numbers with hi > lo"),
    # Without the key, the manifest stopped in a KeyError (and the status table called it lower-is-better).
    ({"foo": {"kind": "generic", "path": "/x", "csv": "/x.csv", "image_col": "image", "score_col": "MOS",
              "lo": 1, "hi": 5}}, "entry 'foo' lacks 'higher_is_better' (kind 'generic')"),
    ({"foo": {"kind": "weird", "path": "/tmp"}}, "entry 'foo' has kind 'weird'; it must be one of ['generic', 'spec']"),
    ({"foo": ["x"]}, "entry 'foo' is ['x'], not a mapping of settings"),
    # "path": 123 was a TypeError traceback; "" silently meant the working folder; a null csv passed.
    ({"foo": {"kind": "generic", "path": 123, "csv": "/x.csv", "image_col": "image", "score_col": "MOS",
              "lo": 1, "hi": 5, "higher_is_better": True}}, "entry 'foo' has path = 123; it must be a non-empty string"),
    ({"foo": {"kind": "generic", "path": "", "csv": "/x.csv", "image_col": "image", "score_col": "MOS",
              "lo": 1, "hi": 5, "higher_is_better": True}}, "entry 'foo' has path = \"\"; it must be a non-empty"),
    ({"foo": {"kind": "generic", "path": "/x", "csv": None, "image_col": 5, "score_col": "MOS",
              "lo": 1, "hi": 5, "higher_is_better": True}}, "entry 'foo' has csv = null; it must be a non-empty"),
])
def test_hand_edited_entries_that_cannot_be_read_are_named(tmp_path, entries, says):
    # An unknown 'spec' name or a text 'lo' ended `iqabench datasets` in a traceback from the status table.
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(entries))
    result = _invoke(registry)
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and says in out and "iqabench datasets add-generic foo --folder DIR" in out, out


def test_a_folder_as_the_registry_is_named(tmp_path):
    (tmp_path / "reg").mkdir()
    result = _invoke(tmp_path / "reg")
    assert result.exit_code == 1 and "registry" in result.output and "is a folder; give the JSON file" in result.output


def test_content_column_keeps_versions_of_one_scene_together(tmp_path):
    # Without it a synthetic set's distorted versions of one reference were separate contents, so splits
    # put versions of the same scene on both sides.
    from iqabench.datasets.local import registered_manifest

    content = b"image,MOS,ref\na.png,3,r1\nb.png,2,r1\nc.png,4,r2\n"
    result, registry, out = _generic_file(tmp_path, content, ("a.png", "b.png", "c.png"), "mine", "--content-col",
                                          "ref")
    assert result.exit_code == 0, out
    assert registered_manifest("mine", registry)["content_id"].tolist() == ["r1", "r1", "r2"]
    result, registry, out = _generic_file(tmp_path, b"image,MOS,ref\na.png,3,r1\nb.png,2,\n", ("a.png", "b.png"),
                                          "other", "--content-col", "ref")
    assert result.exit_code == 1 and "line 3: empty 'ref' (--content-col)" in out


def test_one_column_for_two_roles_is_refused(tmp_path):
    result, registry, out = _generic_file(tmp_path, b"image,MOS\na.png,3\nb.png,2\n", ("a.png", "b.png"), "mine",
                                          "--image-col", "MOS")
    assert result.exit_code == 1 and "--image-col, --score-col and --content-col must name different columns" in out


def test_scores_outside_the_declared_scale_warn_with_count_and_range():
    from iqabench.datasets.build import warn_out_of_range

    with pytest.warns(UserWarning, match=r"mine: 2 raw score\(s\) fall outside the declared scale 0-100 "
                                         r"\(min -1, max 101\)"):
        warn_out_of_range("mine", np.array([-1.0, 50.0, 101.0]), 0, 100, "0-100")


def test_a_registered_dataset_says_how_to_use_it(tmp_path):
    # The success line ended at the folder: where to list the new set (and what runs it) was in no message.
    result, registry = _generic(tmp_path, "a.png,3\nb.png,4\n")
    assert result.exit_code == 0 and registry.exists()
    assert (f"mine registered: 2 images at {tmp_path / 'imgs'}. To use it, list mine under `datasets:` in "
            "params.yaml and run `dvc repro`") in " ".join(result.output.split())


def test_show_says_a_rar_dataset_needs_an_extractor_when_none_is_here(tmp_path, monkeypatch):
    from iqabench.datasets import archives

    monkeypatch.setattr(archives, "load_libarchive", lambda: (None, "libarchive is not installed"))
    monkeypatch.setattr(archives.shutil, "which", lambda tool: None)
    shown = " ".join(_invoke(tmp_path / "registry.json", "show", "tid2013").output.split())
    assert "needs: extracting .rar archives needs libarchive or one of the tools unrar, 7z, 7zz, bsdtar" in shown
    monkeypatch.setattr(archives.shutil, "which", lambda tool: "/usr/bin/bsdtar" if tool == "bsdtar" else None)
    assert "needs:" not in _invoke(tmp_path / "registry.json", "show", "tid2013").output


def test_a_device_or_pipe_as_the_registry_is_refused_and_kept(tmp_path):
    pipe = tmp_path / "registry.fifo"
    os.mkfifo(pipe)
    result, _ = _generic(tmp_path, "a.png,3\nb.png,4\n")  # a valid registration, for its files
    result = _invoke(pipe, "add-generic", "mine", "--folder", str(tmp_path / "imgs"), "--csv",
                     str(tmp_path / "scores.csv"), "--lo", "1", "--hi", "5")
    assert result.exit_code == 1 and f"registry {pipe} is not a regular file (a device, pipe or socket)" in result.output
    assert pipe.is_fifo()


@pytest.mark.parametrize("text, says", [
    ('{"a":' * 100000 + "1" + "}" * 100000, "nests deeper than the parser follows; a registry nests 3 levels"),
    ('{"mine": {"folder": "a"}, "mine": {"folder": "b"}}', "the key 'mine' appears twice in one object"),
])
def test_a_registry_nested_too_deep_or_with_a_repeated_key_is_one_line(tmp_path, text, says):
    registry = tmp_path / "registry.json"
    registry.write_text(text)
    result = _invoke(registry)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert says in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("name", ["../evil", "a/b", ""])
def test_a_hand_edited_entry_name_that_add_generic_refuses_is_refused(tmp_path, name):
    # They were listed as registered: '../evil' names a folder outside data/prepared.
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({name: {"kind": "generic", "path": "/x", "csv": "/x.csv", "image_col": "image",
                                           "score_col": "MOS", "lo": 1, "hi": 5, "higher_is_better": True}}))
    out = " ".join(_invoke(registry).output.split())
    assert f"{registry}: {name!r} cannot name a dataset (up to 64 letters" in out and "rename or remove" in out, out


def test_a_registry_named_but_missing_is_said_and_an_unreadable_size_is_a_dash(tmp_path, monkeypatch):
    # A typo in --registry listed every dataset as missing without a word; /proc/1 as a path lost the table.
    result = _invoke(tmp_path / "typo.json")
    assert result.exit_code == 0 and f"note: {tmp_path / 'typo.json'} does not exist, so nothing is registered" \
        in " ".join(result.output.split())
    from iqabench.datasets import status

    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    (closed / "inner" / "x").write_bytes(b"12")
    assert status.disk_size(closed) == 2

    def refused(self, pattern):  # as rglob does in a folder another user keeps closed (root reads them all)
        raise PermissionError(13, "Permission denied", str(self))
        yield

    monkeypatch.setattr(type(closed), "rglob", refused)
    assert status.disk_size(closed) is None and status.human_size(None) == "-"
