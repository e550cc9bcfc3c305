"""Registering local copies, the status table, the CLI sub-app and the DVC stage script."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakeserver import KADID_LAYOUT_IMAGES, kadid_layout, serve, write_image
from iqabench.datasets import DatasetError
from iqabench.datasets import local
from iqabench.datasets.cli import app
from iqabench.images import check_images, load_rgb
from iqabench.datasets.local import read_registry, register, register_generic, registered_manifest
from iqabench.datasets.status import status_table

REPO = Path(__file__).resolve().parents[1]


def test_register_partial_copy_needs_consent_and_records_path(tmp_path):
    kadid_layout(tmp_path / "copy")
    registry = tmp_path / "registry.json"
    with pytest.raises(DatasetError, match=r"has 3 rated image\(s\); the published dataset has 10125.*--partial"):
        register("kadid10k", tmp_path / "copy", registry_path=registry, progress=False)
    assert not registry.exists()
    with pytest.warns(UserWarning, match="partial copy"):
        entry = register("kadid10k", tmp_path / "copy", registry_path=registry, allow_partial=True, progress=False)
    assert read_registry(registry)["kadid10k"]["path"] == str((tmp_path / "copy").resolve())
    assert entry["images"] == 3 and entry["partial"] is True
    assert len(registered_manifest("kadid10k", registry)) == 3


def test_register_lists_truncated_images_by_name(tmp_path):
    kadid_layout(tmp_path)
    broken = tmp_path / "kadid10k" / "images" / "I01_02_05.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"1 image\(s\) cannot be decoded.*\n  .*I01_02_05.png"):
        register("kadid10k", tmp_path, registry_path=tmp_path / "r.json", allow_partial=True, progress=False)
    assert not (tmp_path / "r.json").exists()


def test_odd_modes_are_converted_consistently_and_reported(tmp_path):
    gray = write_image(tmp_path / "g.png", mode="L")
    rgba = write_image(tmp_path / "a.png", mode="RGBA")
    cmyk = write_image(tmp_path / "c.jpg", mode="CMYK")
    deep = tmp_path / "d.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(deep)
    report = check_images([gray, rgba, cmyk, deep], progress=False)
    assert set(report.converted) >= {"L", "RGBA", "CMYK"} and len(report.converted) == 4
    for path in (gray, rgba, cmyk, deep):
        image = load_rgb(path)
        assert image.mode == "RGB"
    assert np.asarray(load_rgb(deep)).max() == 255
    assert np.array_equal(np.asarray(load_rgb(gray))[..., 0], np.asarray(Image.open(gray)))


def test_generic_dataset_registration_and_manifest(tmp_path):
    write_image(tmp_path / "imgs" / "x.png")
    write_image(tmp_path / "imgs" / "y.png", mode="L")
    (tmp_path / "scores.csv").write_text("file,dmos\nx.png,20\ny.png,80\n")
    registry = tmp_path / "registry.json"
    with pytest.warns(UserWarning, match=r"1 image\(s\) of mode 'L' \(grayscale replicated"):
        register_generic("mine", tmp_path / "imgs", tmp_path / "scores.csv", "file", "dmos", 0, 100, False,
                         score_type="DMOS", registry_path=registry, progress=False)
    frame = registered_manifest("mine", registry)
    scores = dict(zip(frame["image"].map(lambda p: Path(p).name), frame["score"]))
    assert scores == {"x.png": pytest.approx(0.8), "y.png": pytest.approx(0.2)}
    assert frame["raw_scale"].iloc[0] == "DMOS [0, 100], lower is better"
    with pytest.raises(DatasetError, match="known dataset"):
        register_generic("kadid10k", tmp_path / "imgs", tmp_path / "scores.csv", "file", "dmos", 0, 100, False,
                         registry_path=registry)


@pytest.mark.filterwarnings("ignore:kadid10k.*partial copy")
def test_status_table_says_how_to_get_each_dataset(tmp_path):
    kadid_layout(tmp_path / "copy")
    registry = tmp_path / "registry.json"
    register("kadid10k", tmp_path / "copy", registry_path=registry, allow_partial=True, progress=False,
             check_pixels=False)
    rows = {r["name"]: r for r in status_table(tmp_path / "raw", registry)}
    assert rows["kadid10k"]["status"] == "registered (partial)" and rows["kadid10k"]["size"] != "-"
    assert rows["koniq10k"]["status"] == "missing: run `iqabench datasets download koniq10k`"
    assert "no public URL" in rows["spaq"]["status"] and "datasets add spaq --from PATH" in rows["spaq"]["status"]
    assert rows["tid2013"]["score"] == "MOS [0, 9], higher is better"


def test_cli_add_and_status(tmp_path):
    kadid_layout(tmp_path / "copy")
    runner = CliRunner()
    opts = ["--registry", str(tmp_path / "reg.json"), "--data-root", str(tmp_path / "raw")]
    result = runner.invoke(app, opts + ["add", "kadid10k", "--from", str(tmp_path / "copy"), "--partial"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, opts)
    assert result.exit_code == 0 and "kadid10k" in result.output and "partial" in result.output
    result = runner.invoke(app, opts + ["add", "nope", "--from", str(tmp_path)])
    assert result.exit_code == 1 and "unknown dataset 'nope'" in result.output


def test_stage_script_downloads_into_data_raw(tmp_path, monkeypatch):
    kadid_layout(tmp_path / "src")
    archive = shutil.make_archive(str(tmp_path / "kadid10k"), "zip", tmp_path / "src")
    spec_path = REPO / "stages" / "download.py"
    module_spec = importlib.util.spec_from_file_location("stage_download", spec_path)
    stage = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(stage)
    import dataclasses

    from iqabench.datasets import Remote, registry
    with serve({"kadid10k.zip": Path(archive).read_bytes()}) as server:
        patched = dataclasses.replace(registry.SPECS["kadid10k"], n_images=KADID_LAYOUT_IMAGES,
                                      remotes=(Remote(server.url("kadid10k.zip"), "kadid10k.zip"),))
        monkeypatch.setitem(registry.SPECS, "kadid10k", patched)
        code = stage.main(["kadid10k", "--data-root", str(tmp_path / "data" / "raw"),
                           "--lock", str(tmp_path / "data" / "lock.json")])
    assert code == 0
    assert (tmp_path / "data" / "raw" / "kadid10k" / "kadid10k" / "dmos.csv").is_file()
    assert "kadid10k/kadid10k.zip" in json.loads((tmp_path / "data" / "lock.json").read_text())
    assert stage.main(["spaq", "--data-root", str(tmp_path / "data" / "raw"),
                       "--lock", str(tmp_path / "data" / "spaq.lock.json")]) == 1


def test_a_partial_copy_whose_scores_are_all_equal_is_refused(tmp_path):
    # One image (or any subset of one score) ranks nothing: every correlation on it is undefined.
    kadid_layout(tmp_path / "copy")
    dmos = tmp_path / "copy" / "kadid10k" / "dmos.csv"
    dmos.write_text("\n".join(dmos.read_text().splitlines()[:2]) + "\n")
    registry = tmp_path / "registry.json"
    with pytest.raises(DatasetError, match=r"kadid10k: all 1 score\(s\) in the partial copy .*copy are 4.57; a "
                                           "quality dataset needs images with different scores"):
        register("kadid10k", tmp_path / "copy", registry_path=registry, allow_partial=True, progress=False)
    assert not registry.exists()


@pytest.mark.parametrize("name", ["KADID10K", "Mine"])
def test_a_generic_name_that_differs_from_a_dataset_only_in_case_is_refused(tmp_path, name):
    # Their folders data/prepared/NAME would be one on macOS and Windows file systems.
    for image in ("a.png", "b.png"):
        write_image(tmp_path / "imgs" / image)
    (tmp_path / "scores.csv").write_text("image,MOS\na.png,3\nb.png,4\n")
    registry = tmp_path / "registry.json"
    add = dict(folder=tmp_path / "imgs", csv=tmp_path / "scores.csv", image_col="image", score_col="MOS", lo=1,
               hi=5, higher_is_better=True, registry_path=registry, progress=False)
    register_generic("mine", **add)
    with pytest.raises(DatasetError, match=rf"'{name}' differs from the dataset '(kadid10k|mine)' only in case"):
        register_generic(name, **add)
    assert list(read_registry(registry)) == ["mine"]


# Hostile input found by a sweep: each is refused in one line that says what to do, and the registry is left as it
# was (a refused registration writes nothing).

def _cli(registry, *args):
    result = CliRunner().invoke(app, ["--registry", str(registry), *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, " ".join(result.output.split())


def _generic_set(folder: Path, csv: Path, rows=(("a.png", 1), ("b.png", 2), ("c.png", 3)), header="image,MOS"):
    for i, (image, _) in enumerate(rows):
        write_image(folder / image.replace("\\", "/"), seed=i)
    csv.write_text(header + "\n" + "".join(f"{image},{score}\n" for image, score in rows))
    return folder, csv


def _earlier(tmp_path) -> Path:
    """A registry holding one earlier registration, to show that a refusal leaves it byte for byte."""
    registry = tmp_path / "registry.json"
    folder, csv = _generic_set(tmp_path / "earlier", tmp_path / "earlier.csv")
    register_generic("earlier", folder, csv, "image", "MOS", 0, 5, True, registry_path=registry, progress=False)
    return registry


@pytest.mark.parametrize("command", ["add", "add-generic --folder", "add-generic --csv"])
def test_a_path_that_is_not_utf8_is_refused_in_one_line(tmp_path, command):
    # It was a pandas/pyarrow traceback ending in "UnicodeEncodeError ... surrogates not allowed".
    import os
    registry = _earlier(tmp_path)
    before = registry.read_bytes()
    base = tmp_path.resolve()
    bad = Path(os.fsdecode(os.fsencode(base) + b"/tid_\xff"))
    kadid_layout(bad)
    folder, csv = _generic_set(bad / "imgs", bad / "scores.csv")
    if command == "add":
        option, args = "--from", ["add", "kadid10k", "--from", bad, "--partial"]
    elif command.endswith("--folder"):
        option, args = "--folder", ["add-generic", "mine", "--folder", bad, "--csv", tmp_path / "earlier.csv"]
    else:
        option, args = "--csv", ["add-generic", "mine", "--folder", tmp_path / "earlier", "--csv", csv]
    result, out = _cli(registry, *args, *(["--lo", "0", "--hi", "5"] if command != "add" else []))
    shown = f"{base}/tid_\\xff" + ("/scores.csv" if option == "--csv" else "")
    name = "kadid10k" if command == "add" else "mine"
    assert result.exit_code == 1 and out == (
        f"error: {name}: {option} {shown} is not UTF-8 (the name 'tid_\\xff' holds a byte that is not, e.g. a "
        "Latin-1 letter), and the registry and manifests store paths as UTF-8 text; rename it, e.g. `convmv -f "
        f"latin1 -t utf8 -r --notest {base}`, and register again"), out
    assert registry.read_bytes() == before


@pytest.mark.filterwarnings("ignore:kadid10k.*partial copy")
def test_a_registered_copy_that_lost_rows_is_not_prepared_as_a_subset(tmp_path, monkeypatch):
    # Rows removed from the score file after registration made a complete set a subset in every table, silently.
    import dataclasses

    from iqabench.datasets import registry as specs
    monkeypatch.setitem(specs.SPECS, "kadid10k", dataclasses.replace(specs.SPECS["kadid10k"], n_images=3))
    kadid_layout(tmp_path / "copy")
    registry = tmp_path / "registry.json"
    entry = register("kadid10k", tmp_path / "copy", registry_path=registry, check_pixels=False, progress=False)
    assert entry["images"] == 3 and entry["partial"] is False
    dmos = tmp_path / "copy" / "kadid10k" / "dmos.csv"
    dmos.write_text("".join(dmos.read_text().splitlines(keepends=True)[:3]))  # the header and 2 rows
    before = registry.read_bytes()
    with pytest.raises(DatasetError) as err:
        registered_manifest("kadid10k", registry)
    path = (tmp_path / "copy").resolve()
    assert str(err.value) == (
        f"kadid10k: {path} now holds 2 rated images, 3 when it was registered; if the copy changed on purpose, "
        f"register it again (`iqabench datasets add kadid10k --from {path} --partial`)")
    assert registry.read_bytes() == before


def test_a_generic_registration_whose_csv_lost_rows_says_the_command_that_registers_it_again(tmp_path):
    folder, csv = _generic_set(tmp_path / "my set", tmp_path / "scores.csv", header="file,dmos")
    registry = tmp_path / "registry.json"
    register_generic("mine", folder, csv, "file", "dmos", 0, 5.5, False, score_type="DMOS", registry_path=registry,
                     progress=False)
    csv.write_text("file,dmos\na.png,1\nb.png,2\n")
    with pytest.raises(DatasetError) as err:
        registered_manifest("mine", registry)
    folder, csv = folder.resolve(), csv.resolve()
    again = (f"iqabench datasets add-generic mine --folder '{folder}' --csv {csv} --image-col file --score-col dmos "
             "--lo 0 --hi 5.5 --score-type DMOS --lower-is-better")
    assert str(err.value) == (f"mine: {folder} with {csv} now holds 2 rated images, 3 when it was registered; if the "
                              f"copy changed on purpose, register it again (`{again}`)")
    # The command it gives is one that works, and keeps every setting.
    result, out = _cli(registry, *shlex.split(again)[2:])
    assert result.exit_code == 0, out
    assert len(registered_manifest("mine", registry)) == 2 and read_registry(registry)["mine"]["lo"] == 0


@pytest.mark.parametrize("score_type", ["DMOS", "dmos"])
def test_a_dmos_without_a_direction_is_refused_not_taken_as_higher_is_better(tmp_path, score_type):
    # It was registered higher-is-better (a DMOS is usually lower-is-better), and cross-dataset correlations flipped.
    registry = _earlier(tmp_path)
    before = registry.read_bytes()
    folder, csv = _generic_set(tmp_path / "imgs", tmp_path / "scores.csv")
    args = ["add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5", "--score-type",
            score_type]
    result, out = _cli(registry, *args)
    assert result.exit_code == 1 and out == (
        f"error: mine: --score-type {score_type} is usually lower-is-better (a difference from the reference image, "
        "as LIVE's and CSIQ's DMOS), so the direction is not assumed; pass --lower-is-better (usual for DMOS) or "
        "--higher-is-better"), out
    assert registry.read_bytes() == before
    for flag, higher in (("--lower-is-better", False), ("--higher-is-better", True)):
        result, out = _cli(registry, *args, flag)
        assert result.exit_code == 0 and read_registry(registry)["mine"]["higher_is_better"] is higher, out


def test_a_mos_without_a_direction_is_still_higher_is_better(tmp_path):
    folder, csv = _generic_set(tmp_path / "imgs", tmp_path / "scores.csv")
    registry = tmp_path / "registry.json"
    result, out = _cli(registry, "add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5")
    assert result.exit_code == 0 and read_registry(registry)["mine"]["higher_is_better"] is True, out


def test_image_names_with_windows_separators_are_said_to_be_so(tmp_path):
    # It said "6 of 6 listed image(s) are missing ... Re-download or re-extract the dataset": not the CSV's fix.
    rows = [(f"sub\\a{i}.png", i) for i in range(6)]
    folder, csv = _generic_set(tmp_path / "imgs", tmp_path / "scores.csv", rows=rows)
    registry = _earlier(tmp_path)
    before = registry.read_bytes()
    result, out = _cli(registry, "add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5")
    listed = " ".join(f"line {i + 2}: sub\\a{i}.png" for i in range(6))
    assert result.exit_code == 1 and out == (
        f"error: mine: {csv.resolve()}: 6 of 6 listed image name(s) use '\\' (Windows separators) and name no file: "
        f"{listed} Write them with '/' in the CSV (e.g. 'sub/a0.png'), then register again"), out
    assert registry.read_bytes() == before
    csv.write_text(csv.read_text().replace("\\", "/"))  # what it says to do works
    assert _cli(registry, "add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5")[0]\
        .exit_code == 0


def test_a_missing_image_of_a_generic_csv_names_its_line_and_the_csv_fix(tmp_path):
    folder, csv = _generic_set(tmp_path / "imgs", tmp_path / "scores.csv")
    csv.write_text("image,MOS\na.png,1\nb.png,2\nnope.png,3\n")
    registry = _earlier(tmp_path)
    before = registry.read_bytes()
    result, out = _cli(registry, "add-generic", "mine", "--folder", folder, "--csv", csv, "--lo", "0", "--hi", "5")
    folder, csv = folder.resolve(), csv.resolve()
    assert result.exit_code == 1 and out == (
        f"error: mine: {csv}: 1 of 3 listed image(s) are missing: line 4: {folder / 'nope.png'} Fix those rows of "
        f"{csv} (image names are relative to --folder {folder}) or put the images there, then register again"), out
    assert "Re-download" not in out and registry.read_bytes() == before


def _register_many(registry: str, who: str, start) -> None:
    """40 registrations, as many `datasets add` one after another (a spawned process: all start at once)."""
    from iqabench.datasets import local
    start.wait()
    for i in range(40):
        local._save_entry(f"{who}-{i}", {"kind": "generic", "path": "/imgs", "csv": "/s.csv", "image_col": "image",
                                         "score_col": "MOS", "lo": 1.0, "hi": 5.0, "higher_is_better": True},
                          Path(registry))


def test_two_registrations_at_once_keep_both_entries(tmp_path):
    # Each read the registry, added its entry and wrote it back: two processes of 40 ended with 41 of 80 entries.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    runs = [context.Process(target=_register_many, args=(str(tmp_path / "registry.json"), who, start))
            for who in ("a", "b")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    assert [run.exitcode for run in runs] == [0, 0]
    assert len(read_registry(tmp_path / "registry.json")) == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json", "registry.json.lock"]  # no tmp left


def test_a_registration_that_waits_too_long_for_another_says_so(tmp_path, monkeypatch):
    from filelock import FileLock

    registry = _earlier(tmp_path)
    before = registry.read_bytes()
    monkeypatch.setattr(local, "LOCK_WAIT", 0.3)
    with FileLock(tmp_path / "registry.json.lock"):  # another registration, holding the lock
        with pytest.raises(DatasetError) as info:
            local._save_entry("mine", {"kind": "spec", "path": "/x", "images": 1}, registry)
    assert str(info.value) == (f"{tmp_path / 'registry.json.lock'} is still locked after 0.3 s: another "
                               f"registration into {registry} is running; wait for it to finish (or stop it), then "
                               "register again")
    assert registry.read_bytes() == before
    register_generic("mine", *_generic_set(tmp_path / "imgs", tmp_path / "s.csv"), "image", "MOS", 0, 5, True,
                     registry_path=registry, progress=False)  # once it is released
    assert sorted(read_registry(registry)) == ["earlier", "mine"]
