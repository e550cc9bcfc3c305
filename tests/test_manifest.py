import os

import numpy as np
import pandas as pd
import pytest

from iqabench import io, manifest


def _frame(tmp_path, n=4):
    paths = [tmp_path / "imgs" / f"{i}.png" for i in range(n)]
    return manifest.make("demo", paths, np.linspace(1, 5, n), score_type="MOS", lo=1, hi=5, higher_is_better=True,
                         score_source="human MOS (test)", content_id=["a", "a", "b", "b"][:n])


def test_dmos_is_flipped_so_higher_is_better_and_raw_is_kept():
    frame = manifest.make("d", ["x.png", "y.png"], [10.0, 80.0], score_type="DMOS", lo=0, hi=100,
                          higher_is_better=False, score_source="human DMOS")
    assert frame["score"].tolist() == pytest.approx([0.9, 0.2])
    assert frame["raw_score"].tolist() == [10.0, 80.0]
    assert frame["raw_scale"].iloc[0] == "DMOS [0, 100], lower is better"


def test_write_stores_relative_paths_and_read_resolves_them(tmp_path):
    frame = _frame(tmp_path)
    path = manifest.write(frame, tmp_path / "m" / "manifest.csv")
    raw = pd.read_csv(path)
    assert raw["image"].iloc[0] == "../imgs/0.png"
    back = manifest.read(path)
    assert back["image"].iloc[0] == str((tmp_path / "imgs" / "0.png").resolve())
    assert back["content_id"].tolist() == ["a", "a", "b", "b"]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="score"), "missing column"),
    (lambda f: f.assign(score=[0.1, np.nan, 0.3, 0.4]), "'score' is not a finite number in row 3"),
    (lambda f: f.assign(split=["train", "dev", "", ""]), "unknown split 'dev'"),
    (lambda f: f.assign(image=["a", "a", "b", "c"]), "listed twice"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_bad_manifests_name_the_problem(tmp_path, change, message):
    with pytest.raises(manifest.ManifestError, match=message):
        manifest.validate(change(_frame(tmp_path)), where="x.csv")


def test_a_nul_in_a_manifest_file_is_named_with_its_row_not_a_traceback(tmp_path):
    # read() resolved the path and os.path.realpath raised "embedded null byte" with no file or row.
    path = tmp_path / "m" / "manifest.csv"
    manifest.write(_frame(tmp_path), path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(".png", "\x00x.png", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(manifest.ManifestError, match=r"manifest\.csv: 'image' holds a NUL character in row 3 "
                                                     r"\('\.\./imgs/1\\x00x\.png'\); rebuild the manifest"):
        manifest.read(path)


def test_reading_a_missing_manifest_says_how_to_build_it(tmp_path):
    with pytest.raises(manifest.ManifestError, match="dvc repro prepare"):
        manifest.read(tmp_path / "nope.csv")


def test_atomic_write_leaves_old_file_intact_when_writer_fails(tmp_path):
    target = io.write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_write_goes_through_a_symlink_and_never_over_a_device_or_pipe(tmp_path):
    # A registry or baseline linked to a shared file became a private copy; --registry /dev/null as root
    # replaced the device with a JSON file.
    shared = io.write_text(tmp_path / "shared.json", "{}")
    link = tmp_path / "link.json"
    link.symlink_to(shared)
    io.write_text(link, "new")
    assert link.is_symlink() and shared.read_text() == "new"
    protected = io.write_text(tmp_path / "cache-file", "cached")  # DVC's cache: read-only, never written through
    protected.chmod(0o444)
    cached_link = tmp_path / "out.txt"
    cached_link.symlink_to(protected)
    io.write_text(cached_link, "fresh")
    assert not cached_link.is_symlink() and cached_link.read_text() == "fresh" and protected.read_text() == "cached"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for where in (pipe, tmp_path / "to-pipe"):
        if where != pipe:
            where.symlink_to(pipe)
        with pytest.raises(io.NotRegularFileError, match=r"not a regular file \(a device, pipe or socket\); give a "
                                                         r"regular file's path"):
            io.write_text(where, "x")
    assert pipe.is_fifo() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_torch_outputs_are_byte_identical_for_identical_objects(tmp_path):
    import torch

    blob = {"w": torch.arange(6.0).reshape(2, 3), "name": "x"}
    a, b = io.write_torch(tmp_path / "a.pt", blob), io.write_torch(tmp_path / "sub" / "b.pt", blob)
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(torch.load(a, weights_only=True)["w"], blob["w"])


def test_scores_are_written_at_fixed_precision_so_last_bit_noise_keeps_the_bytes(tmp_path):
    raw = np.array([61.23456789012345, 40.0 + 1e-13])
    a = manifest.make("d", [tmp_path / "x.png", tmp_path / "y.png"], raw, score_type="pseudo-MOS", lo=0, hi=100,
                      higher_is_better=True, score_source="test")
    b = a.assign(raw_score=raw * (1 + 3e-16), score=a["score"] * (1 - 2e-16))  # another CPU's last bits
    first, second = manifest.write(a, tmp_path / "a" / "m.csv"), manifest.write(b, tmp_path / "b" / "m.csv")
    assert first.read_bytes() == second.read_bytes()
    assert pd.read_csv(first)["raw_score"].tolist() == [61.23456789, 40.0]


def test_images_of_one_name_in_two_folders_are_two_contents(tmp_path):
    # s1/photo.png and s2/photo.png shared the content id "photo" (the stem): splits kept them together.
    images = ["s1/photo.png", "s2/photo.png", "s2/other.png"]
    assert manifest.own_contents(images) == ["s1/photo.png", "s2/photo.png", "other"]
    frame = manifest.make("demo", images, [1.0, 2.0, 3.0], score_type="MOS", lo=1, hi=5, higher_is_better=True,
                          score_source="test")
    assert frame["content_id"].nunique() == 3
